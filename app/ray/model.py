"""The Model deployment: the checkpoint on one (fractional) GPU or on CPU, batching the clips of every ingress
replica through this project's ``Batcher`` (``LocalBackend``, as in the single-process service).

Why the project's Batcher and not ``serve.batch``: the Batcher's queue is bounded (``VTFPAR_MAX_QUEUE``, then 429
``queue_full``), drops clips that waited past ``VTFPAR_QUEUE_TIMEOUT_S`` (503 ``queue_timeout``) without cutting
a running batch short, takes a cancelled request's clip out of the queue, runs batches on one model thread so the
replica's event loop keeps taking requests, and feeds the ``vtfpar_queue_*``/``vtfpar_batch_*`` metrics.
``serve.batch`` has a batch size and a wait, but no queue bound, no queue timeout and no metrics.

Ray's own limit on a replica's requests (``max_ongoing_requests``) is set above the Batcher's bound (see
``app.ray.app``), so that the Batcher, not Ray, decides when the queue is full.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ray import serve

from ..backend import LocalBackend
from ..batching import BatchResult, Lane
from ..errors import ErrorCode, ServiceError
from ..inference import ModelDescription, load_runner
from ..metrics import Metrics
from ..settings import Settings
from .coordinator import MODEL, ReplicaReport, Reporter
from .gpus import cap_gpu_memory, hide_gpus
from .logs import configure_replica_logging

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What a model replica sends back for one clip: its row, or the error the service answers with."""

    replica: str
    result: BatchResult | None = None
    error_code: ErrorCode | None = None
    error_message: str = ""


@serve.deployment(name=MODEL)
class Model:
    async def __init__(self, settings: Settings, coordinator, reserved_gpus: float = 0) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        configure_replica_logging(settings)
        if reserved_gpus:
            cap_gpu_memory(reserved_gpus)
        else:
            hide_gpus()
        self.settings = settings
        self.replica = serve.get_replica_context().replica_tag
        self.metrics = Metrics()
        self.runner = load_runner(settings)
        self.backend = LocalBackend(settings, self.runner, self.metrics)
        served, description = self.runner.served, self.runner.description
        self.metrics.set_model(served.name, served.version, served.schema, self.runner.device, description.precision)
        # The replica takes requests only once its constructor returns: warm up first.
        await self.backend.start()
        self.metrics.ready.set(1)
        self.reporter = Reporter(coordinator, self._report)
        log.info("model replica %s ready on %s", self.replica, description.device)

    def _report(self) -> ReplicaReport:
        return ReplicaReport(self.replica, MODEL, self.metrics.exposition())

    def check_health(self) -> None:
        """Serve's health check: a replica whose device is lost (a sticky CUDA error) fails it, and Serve replaces
        the replica instead of sending it clips that all fail."""
        lost = getattr(self.runner, "device_lost", None)
        if lost is not None:
            raise RuntimeError(f"the model's device is lost: {lost}")

    async def describe(self) -> ModelDescription:
        return self.runner.description

    async def infer(self, prepared_on_host, lane: Lane = Lane.PREDICT) -> Answer:
        """One clip (``ModelDescription.prepare_on_host``'s result) -> its row of a batch, or the error; the lane
        is the ingress's (``app.batching``)."""
        try:
            if self.runner.device.type == "cuda":  # the copy runs on a worker thread's own CUDA stream
                clip = await asyncio.to_thread(self.runner.to_device, prepared_on_host)
            else:
                clip = prepared_on_host
            result = await self.backend.submit(clip, lane)
        except ServiceError as error:
            return Answer(self.replica, error_code=error.code, error_message=error.message)
        return Answer(self.replica, result=result)

    async def __del__(self) -> None:
        # Serve calls this once the replica's ongoing requests are done (or its graceful shutdown timed out).
        if not hasattr(self, "reporter"):  # the constructor failed
            return
        self.metrics.ready.set(0)
        self.reporter.stop()
        await self.backend.close(self.settings.drain_timeout_s)
