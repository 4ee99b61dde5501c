"""The one place where error codes become HTTP statuses, and every error becomes ``{"error": {...}}``.

FastAPI's own errors (request validation, unknown route, wrong method) are mapped into the same shape, and so is
any exception nothing else handled (a 500, logged with its traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ErrorCode, ServiceError
from ..metrics import Metrics

log = logging.getLogger(__name__)

# Each code's HTTP status and what it means to a client: the error mapper answers with the status, the OpenAPI
# document lists the descriptions under it. A new code is one line here.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (400, "Malformed request: missing, extra or empty parts, or invalid parameters."),
    ErrorCode.UNAUTHORIZED: (401, "VTFPAR_API_TOKEN is set and the request does not carry it as a bearer token."),
    ErrorCode.TOO_MANY_WRONG_TOKENS: (
        429,
        "This client sent too many wrong tokens in the last minute; retry after Retry-After seconds.",
    ),
    ErrorCode.NOT_FOUND: (404, "No such route or resource."),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "The route does not take this method."),
    ErrorCode.UPLOAD_TIMEOUT: (408, "The body was not complete within VTFPAR_UPLOAD_TIMEOUT_S; the connection closes."),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "Upload larger than the byte limit, or too many frame files, tracks or boxes."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: (415, "Content type, container, codec or image format not accepted."),
    ErrorCode.UNDECODABLE_MEDIA: (422, "Corrupt or truncated media."),
    ErrorCode.NO_VIDEO_STREAM: (422, "The file has no video stream."),
    ErrorCode.TOO_FEW_FRAMES: (422, "Fewer frames than VTFPAR_MIN_FRAMES."),
    ErrorCode.CLIP_TOO_LONG: (422, "Longer than VTFPAR_MAX_DURATION_S, or more frames to decode than allowed."),
    ErrorCode.TOO_MANY_PIXELS: (422, "Frames larger than VTFPAR_MAX_PIXELS."),
    ErrorCode.BAD_FRAME_SIZE: (422, "A side above VTFPAR_MAX_SIDE, sides too unequal, or frames of different sizes."),
    ErrorCode.DECODE_TIMEOUT: (422, "Decoding took longer than VTFPAR_DECODE_TIMEOUT_S."),
    ErrorCode.BAD_TRACKS: (422, "Tracks that cannot be read (MOT text or JSON) or do not fit the video."),
    ErrorCode.DETECTION_OFF: (
        404,
        "Built-in detection is off on this server: send your own tracks to /predict/tracks.",
    ),
    # Live streams
    ErrorCode.SOURCE_NOT_ALLOWED: (403, "The stream URL is outside VTFPAR_STREAM_SOURCES, or of a scheme not served."),
    ErrorCode.TOO_MANY_STREAMS: (429, "VTFPAR_MAX_STREAMS streams are open already."),
    ErrorCode.TOO_MANY_VIEWERS: (429, "The stream's MJPEG preview has as many viewers as it takes; poll its snapshot."),
    # Stored tracks and their search
    ErrorCode.UNKNOWN_ATTRIBUTE: (422, "An attribute the model's schema does not have; the message names the closest."),
    ErrorCode.BAD_TIME: (422, "A time that is not ISO 8601, or time bounds in the wrong order."),
    ErrorCode.BAD_SEARCH: (422, "A cursor of another query, an unknown model, or contradictory attributes."),
    ErrorCode.SEARCH_TIMEOUT: (503, "A search ran longer than VTFPAR_SEARCH_TIMEOUT_S; narrow it (camera, time)."),
    ErrorCode.CAMERA_REQUIRED: (422, "store=true needs camera=NAME."),
    # Alerts
    ErrorCode.WEBHOOK_NOT_ALLOWED: (
        403,
        "The rule's webhook URL is outside VTFPAR_WEBHOOK_TARGETS, not http(s), or has spaces or control characters.",
    ),
    ErrorCode.MQTT_OFF: (422, "The rule asks for MQTT and this server has no broker (VTFPAR_MQTT_URL)."),
    ErrorCode.BAD_RULE: (422, "A rule's schedule names an unknown time zone."),
    ErrorCode.NO_EMBEDDING: (
        409,
        "The track has no appearance embedding (stored before embeddings, or by an ONNX export without one), or one of "
        "an older version of the network's embedding: `vtfpar reembed` recomputes them.",
    ),
    ErrorCode.QUEUE_FULL: (429, "The model's queue is full; retry after Retry-After seconds."),
    ErrorCode.OVERLOADED: (429, "Too many requests in flight; retry after Retry-After seconds."),
    ErrorCode.NOT_READY: (503, "Loading, warming up or draining; retry after Retry-After seconds."),
    ErrorCode.QUEUE_TIMEOUT: (503, "Queued longer than VTFPAR_QUEUE_TIMEOUT_S; retry after Retry-After seconds."),
    # nginx's "client closed request": only the metrics see it, nobody is there to read it.
    ErrorCode.CLIENT_DISCONNECTED: (499, "The client left before its answer was ready."),
    ErrorCode.INTERNAL_ERROR: (500, "A bug: the server logged it with the request id."),
}
STATUS: dict[ErrorCode, int] = {code: status for code, (status, _) in ERRORS.items()}
# Statuses that tell the client to come back later.
RETRY_LATER = {429, 503}
# Statuses sent before the body was read to its end: the connection closes, instead of the server reading on
# whatever a slow sender still has to send.
CLOSE_CONNECTION = {408}
_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def error_response(error: ServiceError, retry_after_s: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    status = STATUS[error.code]
    headers = dict(headers or {})
    if status in RETRY_LATER:
        headers["Retry-After"] = str(error.retry_after_s if error.retry_after_s is not None else retry_after_s)
    if status in CLOSE_CONNECTION:
        headers["Connection"] = "close"
    return JSONResponse(
        {"error": {"code": error.code.value, "message": error.message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI, retry_after_s: int, metrics: Metrics) -> None:
    def respond(error: ServiceError, headers: Mapping[str, str] | None = None) -> JSONResponse:
        metrics.rejections.labels(reason=error.code.value).inc()
        return error_response(error, retry_after_s, headers)

    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return respond(exc)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        fallback = ErrorCode.BAD_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
        code = _HTTP_CODES.get(exc.status_code, fallback)
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names the first route of the path only; a path may have several
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        response = respond(ServiceError(code, str(exc.detail)), headers=headers)
        response.status_code = exc.status_code
        return response

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return respond(ServiceError(ErrorCode.BAD_REQUEST, f"invalid request: {problems}"))

    def unexpected_error() -> JSONResponse:
        return respond(ServiceError(ErrorCode.INTERNAL_ERROR, "internal error"))

    # Starlette types every handler as taking any Exception; it calls each with the class it is registered for.
    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    # Not add_exception_handler(Exception): Starlette runs that one outside every middleware, where the response
    # gets no X-Request-Id and the log line no request id, and then re-raises for the server to log it again.
    app.add_middleware(UnexpectedErrorMiddleware, respond=unexpected_error)


def _allowed_methods(request: Request) -> str:
    """Every method some route of the request's path takes (e.g. GET and DELETE on /streams/{id})."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


class UnexpectedErrorMiddleware:
    """Answers an exception no handler took with a 500 error body, and logs it once with its traceback.

    Added before the request context middleware, so it runs inside it: the request id is still set."""

    def __init__(self, app: ASGIApp, respond) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            if started:  # too late for an error body; the server closes the connection
                raise
            log.exception("unhandled error")
            await self.respond()(scope, receive, send)
