"""The running service: the model backend, decoder, the tracks pipeline, metrics, admission and the readiness state,
wired together.

Routes reach it through a FastAPI dependency, so tests can build one around a fake runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import torch

from .backend import ModelBackend
from .decoding import DecodeLimits, Decoder
from .errors import ErrorCode, ServiceError
from .metrics import Metrics
from .settings import Settings
from .streams import StreamManager, Streams
from .tracks import SceneTracker, TrackLimits, TrackPipeline

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        settings: Settings,
        backend: ModelBackend,
        metrics: Metrics | None = None,
        scene: SceneTracker | None = None,
        streams: Streams | None = None,
    ) -> None:
        # GPU-sized defaults (decode workers) where the model runs on CUDA, here or on a Ray model replica.
        self.settings = settings = settings.for_device(torch.device(backend.description.device).type)
        self.backend = backend
        self.metrics = metrics or Metrics()
        self.limits = DecodeLimits.from_settings(settings)
        description = backend.description
        self.decoder = Decoder(
            self.limits, settings.decode_workers, description.frames_per_clip, backend.prepare, observer=self.metrics
        )
        # /predict/tracks and /predict/scene; scene is None when built-in detection is off.
        self.tracks = TrackPipeline(
            description.frames_per_clip,
            self.limits,
            TrackLimits.from_settings(settings),
            description.preprocess.square_frame,
            backend.prepare,
            scene,
        )
        # Live streams use the same detector and model (through the batcher, behind requests), unless they run
        # elsewhere (``streams``: Ray's camera actors).
        self.streams: Streams = streams or StreamManager(
            settings, backend, self.metrics, scene.detector if scene is not None else None
        )
        self.warmed_up = False
        self.warm_up_failed = False
        self.draining = False
        self._uploads = _Slots(
            settings.max_concurrent_uploads, self.metrics.uploads_in_flight, "request bodies are being received"
        )
        self._requests = _Slots(
            settings.max_concurrent_requests, self.metrics.in_flight, "requests are being decoded or run"
        )
        self._warmup_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        served = description.served
        device = torch.device(description.device)
        self.metrics.set_model(served.name, served.version, served.schema, device, description.precision)
        self.metrics.ready.set_function(lambda: 1 if self.ready else 0)

    @property
    def failed(self) -> bool:
        """The service cannot serve (its warm-up failed, or its model's device is lost): the server exits
        (non-zero) so that a supervisor restarts it."""
        # Only a backend whose model runs in this process can lose its device here (LocalBackend).
        runner = getattr(self.backend, "runner", None)
        return self.warm_up_failed or getattr(runner, "device_lost", None) is not None

    @property
    def ready(self) -> bool:
        return self.warmed_up and not self.draining and not self.failed

    @property
    def in_flight(self) -> int:
        """/predict requests admitted and not yet answered: uploading, decoding, queued or running."""
        return self._uploads.count + self._requests.count

    async def start(self) -> None:
        """Start the model backend (worker and warm-up) in the background; ready once that is done."""
        self._loop = asyncio.get_running_loop()
        self._warmup_task = self._loop.create_task(self._warm_up(), name="warm-up")
        await self.streams.start()

    async def _warm_up(self) -> None:
        try:
            await self.backend.start()
        except Exception:
            log.exception("warm-up failed: the server stops")
            self.warm_up_failed = True
            return
        self.warmed_up = True
        log.info("ready")

    def begin_drain(self) -> None:
        """Not ready from now on. Runs inside the SIGTERM handler, so it only sets a flag (no locks) and
        leaves the logging to the event loop."""
        if not self.draining:
            self.draining = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(log.info, "draining: not ready, finishing accepted requests")
                # Streams end now, not after the open connections: their events readers get each track's end.
                self._loop.call_soon_threadsafe(self.streams.begin_stop)

    async def stop(self) -> None:
        self.begin_drain()
        if self._warmup_task is not None:
            self._warmup_task.cancel()
        await self.streams.stop()
        await self.backend.close(self.settings.drain_timeout_s)
        self.decoder.close()

    @contextlib.contextmanager
    def admit(self):
        """Admission for one /predict request, in two steps, so that slow senders cannot starve decoding.

        On arrival the service must be ready and one of ``max_concurrent_uploads`` upload slots free; the body then
        has ``upload_timeout_s`` to arrive. Once it has, ``admission.body_received()`` trades the upload slot for
        one of ``max_concurrent_requests`` slots for decoding, queueing and inference. A request that never
        finishes its body holds an upload slot until its deadline, never one of the slots real work needs."""
        if not self.ready:
            raise ServiceError(
                ErrorCode.NOT_READY,
                "the service is draining" if self.draining else "the model is still loading or warming up",
            )
        admission = Admission(self._uploads, self._requests)
        try:
            yield admission
        finally:
            admission.release()


class _Slots:
    """A counted capacity, mirrored in a gauge; full means 429 overloaded."""

    def __init__(self, limit: int, gauge, what: str) -> None:
        self.limit, self.gauge, self.what = limit, gauge, what
        self.count = 0

    def take(self) -> None:
        if self.count >= self.limit:
            raise ServiceError(ErrorCode.OVERLOADED, f"{self.limit} {self.what} already")
        self.count += 1
        self.gauge.set(self.count)

    def release(self) -> None:
        self.count -= 1
        self.gauge.set(self.count)


class Admission:
    """One /predict request's place: an upload slot while its body arrives, then a processing slot."""

    def __init__(self, uploads: _Slots, requests: _Slots) -> None:
        uploads.take()
        self._held, self._requests = uploads, requests

    def body_received(self) -> None:
        if self._held is not self._requests:
            self._requests.take()  # may refuse; the upload slot is released on the way out all the same
            self._held.release()
            self._held = self._requests

    def release(self) -> None:
        self._held.release()
