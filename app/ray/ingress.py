"""The Ingress deployment: the service's FastAPI app (``app.main.create_app``) with ``RayBackend`` as its model.

Each ingress replica receives uploads, applies every limit, decodes and samples on its decode pool, and runs the
host's half of preprocessing (``ModelDescription.prepare_on_host``), all on CPU, with no model loaded. What it
sends a model replica is that half's result: on a CPU model, the normalised clip ``[T, 3, S, S]`` float32 (what
the single-process service queues, so the answers are the same); on a GPU model, the clip's uint8 frames with the
long side already at S (``Preprocess.fit``), which the GPU finishes batch-wise as in the single-process GPU path.
Either way the resizing, the CPU-heavy part, is done where decoding scales, and a clip crosses the wire once, at
a bounded size whatever was uploaded.
"""

from __future__ import annotations

import logging

from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..main import create_app
from ..settings import Settings
from .backend import RayBackend
from .coordinator import INGRESS, CoordinatorReply, ReplicaReport, Reporter
from .gpus import hide_gpus
from .logs import configure_replica_logging
from .metrics import ClusterMetrics
from .streams import RayStreams

log = logging.getLogger(__name__)


class OneRequestIdHeader:
    """Drops the service's X-Request-Id response header when Serve's proxy will send the same one.

    Serve's proxy forwards the client's X-Request-Id (or one it generated) to the replica and echoes it in the
    response, whatever it is. The service adopts a valid one and echoes it too, which would send the header twice;
    an id the service refused (too long, odd characters) gets the service's own id as a second header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        forwarded = (b"x-request-id", dict(scope["headers"]).get(b"x-request-id"))

        async def send_once(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [header for header in message.get("headers", []) if tuple(header) != forwarded]
            await send(message)

        await self.app(scope, receive, send_once)


@serve.deployment(name=INGRESS)
@serve.ingress()
class Ingress:
    async def __init__(self, settings: Settings, model, coordinator, registry) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        configure_replica_logging(settings)
        if settings.decode_device != "cuda":  # decoding on the GPU (NVDEC) is the one use an ingress has for it
            hide_gpus()
        self.replica = serve.get_replica_context().replica_tag
        description = await model.describe.remote()  # waits for a model replica to be up and warm
        self.metrics = ClusterMetrics(self.replica)
        # Not "app": Serve's ingress wrapper has a property of that name.
        self.fastapi = create_app(
            settings, backend=RayBackend(model, description), metrics=self.metrics, streams=RayStreams(registry)
        )
        self.fastapi.add_middleware(OneRequestIdHeader)  # outermost
        self.reporter = Reporter(coordinator, self._report, self._on_reply)

    def __serve_build_asgi_app__(self):
        return self.fastapi

    def _report(self) -> ReplicaReport | None:
        service = getattr(self.fastapi.state, "service", None)
        if service is None:  # the app's lifespan has not started yet
            return None
        return self.metrics.report(service.in_flight, service.draining)

    def _on_reply(self, reply: CoordinatorReply) -> None:
        self.metrics.others = reply.reports
        if reply.draining:
            self.fastapi.state.service.begin_drain()

    async def __del__(self) -> None:
        # Runs after Serve's ingress wrapper has shut the app's lifespan down; also after a failed constructor.
        if hasattr(self, "reporter"):
            self.reporter.stop()
