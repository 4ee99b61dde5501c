"""The app factory: settings in, a FastAPI app out, with the model loaded and warmed up by its lifespan.

``create_app(settings, runner=..., detector=...)`` lets tests serve a runner (and a person detector for
/predict/scene) they built (or wrapped) themselves; ``create_app(settings, backend=..., metrics=...)`` serves a
model that runs elsewhere (a Ray ingress replica).
Run with ``vtfpar serve``, or ``uvicorn --factory app.main:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from fastapi import FastAPI

from model import CheckpointError

from .api.errors import install_error_handlers
from .api.middleware import RequestContextMiddleware
from .api.routes import router
from .backend import LocalBackend, ModelBackend
from .inference import ModelRunner, StartupError, resolve_device
from .log import log_config
from .metrics import Metrics
from .service import Service
from .settings import Settings
from .tracks import Detector, load_scene

log = logging.getLogger(__name__)

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
    runner: ModelRunner | None = None,
    backend: ModelBackend | None = None,
    metrics: Metrics | None = None,
    detector: Detector | None = None,
) -> FastAPI:
    """The app for ``settings`` (default: the ``VTFPAR_*`` variables), serving ``runner``, or ``backend``'s model
    that runs elsewhere, or else the checkpoint the settings name, loaded by the lifespan."""
    if runner is not None and backend is not None:
        raise TypeError("create_app serves a runner or a backend, not both: a backend already holds its model")
    settings = settings or Settings()
    metrics = metrics or Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Loading fails fast (the process exits with the reason); warm-up runs after startup, and
        # /health/ready turns 200 when it is done.
        model_backend = backend
        try:
            if model_backend is None:
                model_runner = runner if runner is not None else await asyncio.to_thread(ModelRunner.load, settings)
                model_backend = LocalBackend(settings, model_runner, metrics)
            # The detector runs where the uploads are decoded: in this process.
            scene = await asyncio.to_thread(load_scene, settings, resolve_device(settings.device), detector)
        except (StartupError, CheckpointError) as exc:
            log.error("cannot load the model: %s", exc)
            raise
        service = Service(settings, model_backend, metrics, scene)
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="VTFPAR++ attribute service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app, settings.retry_after_s, metrics)
    app.include_router(router)
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
