"""The model as the service sees it: a description, the host's half of preparing a clip, and a place to submit
prepared clips to, one row of probabilities back per clip.

Routes and :class:`~app.service.Service` talk to "the model" only through :class:`ModelBackend`. This process's
model is :class:`LocalBackend` (the runner behind this process's :class:`~app.batching.Batcher`); a Ray ingress
replica talks to model replicas elsewhere through ``app.ray.backend.RayBackend``. A route that submits several
clips (one per track) works the same way on either.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Protocol

import numpy as np

from .batching import Batcher, BatchResult, Lane
from .inference import ModelDescription, Runner, warmup_batch_sizes
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)


class ModelBackend(Protocol):
    description: ModelDescription

    def prepare(self, frames: list[np.ndarray]) -> object:
        """One clip's sampled RGB uint8 frames -> what ``submit`` takes (runs on a decode thread)."""
        ...

    async def start(self) -> None:
        """Returns once clips can be submitted (model loaded and warmed up); raises if they never can."""
        ...

    async def submit(self, clip: object, lane: Lane = Lane.PREDICT) -> BatchResult:
        """This clip's row of probabilities, from a batch; raises ``ServiceError`` (queue full, queue timeout,
        not ready). Cancelling the caller takes the clip out of the queue. The lane sets its priority: /predict's
        clips first, then the tracks of footage requests (which wait for room rather than being refused), then
        live streams' (``app.batching``)."""
        ...

    async def close(self, drain_timeout_s: float) -> None:
        """Refuses new clips and lets queued ones finish, up to the timeout."""
        ...


class LocalBackend:
    """The model in this process: the runner behind a bounded, batching queue."""

    def __init__(self, settings: Settings, runner: Runner, metrics: Metrics) -> None:
        self.settings = settings = settings.for_device(runner.device.type)  # GPU-sized batches on CUDA
        self.runner = runner
        self.description = runner.description
        self.prepare = runner.prepare
        self.batcher = Batcher(
            runner.predict_embedded,
            max_batch_clips=settings.max_batch_clips,
            max_batch_wait_ms=settings.max_batch_wait_ms,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            observer=metrics,
        )
        if runner.device.type == "cuda" and runner.description.runtime.startswith("torch"):  # torch's allocator
            metrics.track_gpu_memory(runner.device)

    async def start(self) -> None:
        """Start the batch worker, then run every batch size once (on the model thread, never beside a batch)."""
        self.batcher.start()
        sizes = warmup_batch_sizes(self.settings.max_batch_clips) if self.settings.warmup else []
        if sizes:
            await self.batcher.run_on_model_thread(self.runner.warm_up, sizes)
            log.info("warmed up batch sizes %s", sizes)

    async def submit(self, clip: object, lane: Lane = Lane.PREDICT) -> BatchResult:
        return await self.batcher.submit(clip, lane)

    async def close(self, drain_timeout_s: float) -> None:
        await self.batcher.close(drain_timeout_s)


# The model replicas that computed the current request's answer: the request context middleware sets an empty list
# per request and names what it holds in the X-Replica response header; a backend whose model runs in other
# processes adds each replica it hears from. A list, not a value set per call, so that tasks started for the
# request, which run on a copy of its context, add to the same one.
answering_replicas_var: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "answering_replicas", default=None
)


def record_replica(name: str) -> None:
    replicas = answering_replicas_var.get()
    if replicas is not None and name not in replicas:
        replicas.append(name)
