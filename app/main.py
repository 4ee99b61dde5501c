"""The app factory: settings in, a FastAPI app out, with the model loaded and warmed up by its lifespan.

``create_app(settings, runner=..., detector=...)`` lets tests serve a runner (and a person detector for
/predict/scene) they built (or wrapped) themselves; ``create_app(settings, backend=..., metrics=...)`` serves a
model that runs elsewhere (a Ray ingress replica).
Run with ``vtfpar serve``, or ``uvicorn --factory app.main:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import logging.config
import select
import socket
import struct
import sys
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from model import CheckpointError

from .alerts import AlertMetrics, Alerts, AlertStore
from .api.alerts import router as alerts_router
from .api.auth import WrongTokenThrottle
from .api.errors import install_error_handlers
from .api.middleware import RequestContextMiddleware
from .api.routes import router
from .api.similar import router as similar_router
from .api.streams import router as streams_router
from .api.tracks_store import router as tracks_store_router
from .backend import LocalBackend, ModelBackend
from .decoding import DecodeLimits
from .decoding.video import DecodeDeviceError, check_decode_device
from .default_token import with_announced_default_token
from .inference import Runner, StartupError, load_runner, resolve_device
from .log import ReportedStartupError, log_config
from .memory import return_large_buffers
from .metrics import Metrics
from .service import Service
from .settings import Settings
from .store import ImageEmbeddings, ModelSpec, TrackEmbeddings, TrackStore
from .store.recording import StreamRecorder
from .store.retention import purge_periodically
from .streams import Streams
from .streams.preview import Previews
from .tracks import Detector, load_scene

log = logging.getLogger(__name__)
CONSOLE = Path(__file__).parent / "static"

DESCRIPTION = """\
Video pedestrian attribute recognition (VTFPAR++). POST a pedestrian clip, or a tracklet of crops, to
`/predict` and get a probability and a thresholded decision for every attribute of the model's schema; POST
camera footage and its tracks (MOT text or JSON) to `/predict/tracks`, or the footage alone to `/predict/scene`
where the service runs its own detector and tracker, and get them per person. Requests are batched dynamically;
`/metrics` shows batch sizes, queue and decode times.
"""


def create_app(
    settings: Settings | None = None,
    *,
    runner: Runner | None = None,
    backend: ModelBackend | None = None,
    metrics: Metrics | None = None,
    detector: Detector | None = None,
    streams: Streams | None = None,
) -> FastAPI:
    """The app for ``settings`` (default: the ``VTFPAR_*`` variables), serving ``runner``, or ``backend``'s model
    that runs elsewhere, or else the checkpoint the settings name, loaded by the lifespan; ``streams`` run the live
    streams elsewhere (Ray's camera actors) rather than in this process."""
    if runner is not None and backend is not None:
        raise TypeError("create_app serves a runner or a backend, not both: a backend already holds its model")
    if settings is None:
        # Called with nothing, as ``uvicorn --factory app.main:create_app`` calls it (after uvicorn has set up its
        # own logging): the logs follow VTFPAR_LOG_JSON and VTFPAR_LOG_LEVEL as under ``vtfpar serve``.
        # It cannot see uvicorn's --host, so VTFPAR_HOST (default 0.0.0.0) decides whether it makes a token.
        settings = Settings()
        logging.config.dictConfig(log_config(settings.log_level, settings.log_json))
        settings = with_announced_default_token(settings)
    metrics = metrics or Metrics()
    return_large_buffers()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Loading fails fast (the process exits with the reason); warm-up runs after startup, and
        # /health/ready turns 200 when it is done.
        model_backend = backend
        try:
            if model_backend is None:
                model_runner = runner if runner is not None else await asyncio.to_thread(load_runner, settings)
                model_backend = LocalBackend(settings, model_runner, metrics)
            await asyncio.to_thread(check_decode_device, DecodeLimits.from_settings(settings))
            # The detector runs where the uploads are decoded: in this process.
            scene = await asyncio.to_thread(load_scene, settings, resolve_device(settings.device), detector)
        except (StartupError, CheckpointError) as exc:
            log.error("cannot load the model: %s", exc)
            raise ReportedStartupError(str(exc)) from None
        except DecodeDeviceError as exc:
            log.error("cannot decode uploads: %s", exc)
            raise ReportedStartupError(str(exc)) from None
        service = Service(settings, model_backend, metrics, scene, streams)
        app.state.service = service
        app.state.track_store = store = await asyncio.to_thread(TrackStore.from_settings, settings)
        where = "in the configured database" if settings.database_url else f"in {settings.data_dir / 'tracks.db'}"
        log.info("stored tracks are kept %s, their pictures under %s", where, settings.data_dir / "thumbnails")
        app.state.track_embeddings = embeddings = await asyncio.to_thread(
            TrackEmbeddings.attach, store, settings.data_dir
        )
        app.state.image_embeddings = await asyncio.to_thread(ImageEmbeddings.attach, store)
        # Live streams store the tracks they end through it (the stream manager's track-end listener).
        app.state.stream_recorder = recorder = StreamRecorder(store, ModelSpec.of(model_backend.description))
        service.streams.add_track_end_listener(recorder.track_ended)
        # Rules fire on live tracks as their attributes settle, and on uploads stored with store=true.
        app.state.alerts = alerts = Alerts(
            AlertStore(store.engine), ModelSpec.of(model_backend.description), settings, AlertMetrics(metrics.registry)
        )
        service.streams.add_event_listener(alerts.stream_event)
        await alerts.start()
        purging = asyncio.create_task(
            purge_periodically(store, settings.retention_days, also=[alerts.store.purge]), name="purge"
        )
        try:
            try:
                await service.start()
            except StartupError as exc:  # the streams file
                log.error("cannot start: %s", exc)
                raise ReportedStartupError(str(exc)) from None
            yield
        finally:
            await service.stop()
            await alerts.stop()  # after the streams' last track ends
            purging.cancel()
            await recorder.drain()
            await asyncio.to_thread(embeddings.save)
            store.close()

    app = FastAPI(title="VTFPAR++ attribute service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.wrong_tokens = WrongTokenThrottle()
    app.state.previews = Previews()
    install_error_handlers(app, settings.retry_after_s, metrics)
    app.include_router(router)
    app.include_router(streams_router)
    app.include_router(similar_router)
    app.include_router(tracks_store_router)
    app.include_router(alerts_router)
    app.mount("/ui", StaticFiles(directory=CONSOLE, html=True), name="console")  # the web console (app/static)
    app.add_api_route("/", lambda: RedirectResponse("/ui/"), include_in_schema=False)  # the front door
    # Added last, so outermost: its request id is set while the error middleware above logs and answers.
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn, but the service reports not ready the moment a shutdown signal arrives, and the server stops
    (``failed``) when the service cannot serve (its warm-up failed)."""

    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.app, self.failed = app, False

    async def on_tick(self, counter: int) -> bool:
        service = getattr(self.app.state, "service", None)
        if service is not None and service.failed:
            self.failed = True
            return True
        return await super().on_tick(counter)

    def handle_exit(self, sig, frame) -> None:
        service = getattr(self.app.state, "service", None)
        if service is not None:
            service.begin_drain()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets=None) -> None:
        """uvicorn's shutdown closes the listening sockets at once, and the kernel resets every connection still
        in their backlog, though its client has sent its request. First the sockets stop taking connections
        (a new one is refused) and the backlog is accepted and answered (503 while draining)."""
        listeners = [sock for server in self.servers for sock in server.sockets]
        for sock in listeners:
            refuse_new_connections(sock)
        await _accepted(listeners, timeout_s=BACKLOG_DRAIN_S)
        await super().shutdown(sockets)


BACKLOG_DRAIN_S = 1.0  # longest wait for the event loop to accept the connections left in a listen backlog
SO_ATTACH_FILTER = 26  # Linux; the socket module does not name it
_DROP_EVERY_PACKET = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF "ret #0"


def refuse_new_connections(sock) -> None:
    """On Linux, a socket filter that drops every packet a listening socket receives: new connections never
    complete their handshake (and are refused once the socket closes), those already in the backlog stay."""
    if sys.platform != "linux":
        return
    program = struct.pack("HL", 1, ctypes.addressof(_DROP_EVERY_PACKET))  # struct sock_fprog {len; *filter}
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
    except OSError as exc:
        log.warning("cannot stop new connections before closing the listening socket: %s", exc)


async def _accepted(listeners: list, timeout_s: float) -> None:
    """Returns once no listening socket has a connection waiting to be accepted (the event loop accepts them),
    or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while listeners and time.monotonic() < deadline:
        waiting, _, _ = select.select(listeners, [], [], 0)
        if not waiting:
            return
        await asyncio.sleep(0.01)


def build_server(app: FastAPI, settings: Settings, **overrides) -> DrainingServer:
    options = dict(
        host=settings.host,
        port=settings.port,
        access_log=False,
        lifespan="on",
        log_config=log_config(settings.log_level, settings.log_json),
        timeout_graceful_shutdown=settings.drain_timeout_s,
    )
    return DrainingServer(app, uvicorn.Config(app, **{**options, **overrides}))
