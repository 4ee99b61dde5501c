"""Per-request context for every endpoint: the request id (accepted from ``X-Request-Id`` or generated, echoed
back, put in every log line), the model replicas that answered (``X-Replica``, when the model runs in other
processes), request metrics and one access-log line.

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would sit between the route and the request body
stream that the upload limit wraps.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..backend import answering_replicas_var
from ..log import request_id_var
from ..metrics import Metrics

access_log = logging.getLogger("app.access")
# Client ids are echoed into headers and logs: keep them short and printable.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
QUIET_PATHS = ("/metrics", "/health/")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _VALID_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        replicas: list[str] = []
        replicas_token = answering_replicas_var.set(replicas)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if replicas:
                    headers.append((b"x-replica", ", ".join(replicas).encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.request_duration.labels(endpoint=endpoint).observe(seconds)
            path = scope["path"]
            if not path.startswith(QUIET_PATHS):
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    path,
                    status,
                    extra={"status": status, "duration_s": round(seconds, 6), "endpoint": endpoint},
                )
            answering_replicas_var.reset(replicas_token)
            request_id_var.reset(token)
