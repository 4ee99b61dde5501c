"""Dynamic batching: many concurrent requests, one model worker, one forward pass per batch.

Callers ``submit`` one clip each and await their own row. A single worker task takes the oldest clips, waits
up to ``max_batch_wait_ms`` after the first for the batch to fill to ``max_batch_clips``, runs the model on a dedicated
thread (the event loop keeps serving) and hands every caller its row. A clip not taken within ``queue_timeout_s``
of entering the queue is dropped (``QUEUE_TIMEOUT``; like Triton, the timeout covers waiting, not running), and a
caller that goes away (its task is cancelled) takes its clip out of the queue.

Clips wait in three lanes, each bounded by ``max_queue``, and a batch takes them in strict priority:

- ``Lane.PREDICT``: /predict's single clips, first in every batch; a full lane refuses (``QUEUE_FULL``).
- ``Lane.FOOTAGE``: the tracks of /predict/tracks and /predict/scene requests. A full lane does not refuse: the
  clips beyond it wait for room, first come first in, and each starts its queue timeout when it enters. Such a
  request was admitted with its clips already in memory, so refusing some of them would only waste the decoding;
  how many such requests run at once is ``max_concurrent_requests``'s to bound.
- ``Lane.STREAM``: live streams' clips fill only the room the others leave, so that streams never slow requests
  down; when requests keep every batch full, stream clips time out and the stream tries again at its next update.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import ErrorCode, ServiceError

log = logging.getLogger(__name__)

# Runs a forward pass on a batch of clips (as the runner prepared them) and returns probabilities [B, A], or
# probabilities and appearance embeddings [B, W], and possibly CLIP image embeddings [B, E]
# (ModelRunner.predict_embedded).
InferFn = Callable[
    [list], np.ndarray | tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
]


class Lane(enum.Enum):
    """Where a clip waits; batches take the lanes in this order."""

    PREDICT = "predict"
    FOOTAGE = "footage"
    STREAM = "stream"


@dataclass
class BatchResult:
    probabilities: np.ndarray  # [A], this caller's row
    queue_s: float  # submit -> taken into a batch (waiting for room included)
    inference_s: float  # the whole batch's forward pass
    batch_size: int
    embedding: np.ndarray | None = None  # [W], unit length; None where the runner gives none (an older ONNX export)
    image_embedding: np.ndarray | None = None  # [E], CLIP's, unit length; only with clip_image_embedding


@dataclass(eq=False)  # items are found by identity (deque.remove), never compared by value
class _Item:
    clip: object
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)
    enqueued: float = 0.0  # when it entered its lane; the queue timeout counts from here
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    taken: bool = False

    def enqueue(self) -> None:
        self.enqueued = time.perf_counter()
        self.queued.set()


class BatchObserver:
    """Hooks for metrics; the default observes nothing."""

    def on_queue_depth(self, depth: int) -> None: ...  # clips queued or waiting for room
    def on_queue_wait(self, seconds: float, outcome: str) -> None: ...  # outcome: ok, timeout or cancelled
    def on_batch(self, size: int, seconds: float) -> None: ...


class Batcher:
    def __init__(
        self,
        infer: InferFn,
        max_batch_clips: int,
        max_batch_wait_ms: float,
        max_queue: int,
        queue_timeout_s: float,
        observer: BatchObserver | None = None,
    ) -> None:
        self.infer = infer
        self.max_batch_clips = max_batch_clips
        self.max_batch_wait_ms = max_batch_wait_ms
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.observer = observer or BatchObserver()
        # Invariants, all on the event loop: _arrived is set whenever a clip was queued since the worker last
        # cleared it (so the worker never sleeps on a non-empty queue); _idle is set exactly when the queue is
        # empty and no batch is on the model thread (close() waits on it to drain); _busy is true while a batch
        # runs. Only the worker clears _arrived and runs batches. Footage clips wait in _waiting only while
        # their lane is full, and move in (synchronously, oldest first) whenever it has room.
        self._lanes: dict[Lane, collections.deque[_Item]] = {lane: collections.deque() for lane in Lane}
        self._waiting: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._busy = False
        self._worker: asyncio.Task | None = None
        # One model thread: batches run one after another, never concurrently.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    @property
    def depth(self) -> int:
        """Clips queued in the lanes (those waiting for room in the footage lane not counted)."""
        return sum(len(queue) for queue in self._lanes.values())

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def run_on_model_thread(self, fn, *args):
        """Runs ``fn`` where the batches run (warm-up uses this, so it never overlaps a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    async def submit(self, clip: object, lane: Lane = Lane.PREDICT) -> BatchResult:
        """This clip's row, once a batch has run it (see the module's docstring for the lanes)."""
        if self._closed:
            raise ServiceError(ErrorCode.NOT_READY, "the service is shutting down")
        queue = self._lanes[lane]
        full = len(queue) >= self.max_queue
        if full and lane is not Lane.FOOTAGE:
            raise ServiceError(ErrorCode.QUEUE_FULL, f"the queue holds {self.max_queue} clips already")
        item = _Item(clip, asyncio.get_running_loop().create_future())
        if lane is Lane.FOOTAGE and (full or self._waiting):
            self._waiting.append(item)
        else:
            item.enqueue()
            queue.append(item)
            self._arrived.set()
        self._idle.clear()
        self.observer.on_queue_depth(self.depth + len(self._waiting))
        try:
            await item.queued.wait()
            return await asyncio.wait_for(asyncio.shield(item.future), self.queue_timeout_s)
        except TimeoutError:
            if item.taken:  # already running: the queue timeout no longer applies
                return await item.future
            self._remove(item, "timeout")
            raise ServiceError(
                ErrorCode.QUEUE_TIMEOUT, f"the clip waited {self.queue_timeout_s:g} s without reaching the model"
            ) from None
        except asyncio.CancelledError:
            if not item.taken:
                self._remove(item, "cancelled")
            raise

    def _remove(self, item: _Item, outcome: str) -> None:
        for queue in (*self._lanes.values(), self._waiting):
            try:
                queue.remove(item)
            except ValueError:
                continue
            self.observer.on_queue_wait(time.perf_counter() - item.submitted, outcome)
            break
        item.future.cancel()
        self._let_footage_in()
        self.observer.on_queue_depth(self.depth + len(self._waiting))
        if not self.depth and not self._busy:
            self._idle.set()

    def _let_footage_in(self) -> None:
        footage = self._lanes[Lane.FOOTAGE]
        while self._waiting and len(footage) < self.max_queue:
            item = self._waiting.popleft()
            item.enqueue()
            footage.append(item)
            self._arrived.set()

    async def _run(self) -> None:
        while True:
            while not self.depth:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for the batch to fill, counted from when its oldest clip arrived.
            fill_by = min(queue[0].enqueued for queue in self._lanes.values() if queue)
            fill_by += self.max_batch_wait_ms / 1000
            while self.depth < self.max_batch_clips and (remaining := fill_by - time.perf_counter()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch: list[_Item] = []
            for queue in self._lanes.values():  # in priority order
                batch += [queue.popleft() for _ in range(min(self.max_batch_clips - len(batch), len(queue)))]
            self._let_footage_in()
            if not batch:  # every waiting caller left while the batch filled
                continue
            self._busy = True
            try:
                await self._run_batch(batch)
            finally:
                self._busy = False
                if not self.depth:
                    self._idle.set()

    async def _run_batch(self, batch: list[_Item]) -> None:
        self.observer.on_queue_depth(self.depth + len(self._waiting))
        taken_at = time.perf_counter()
        for item in batch:
            item.taken = True
            self.observer.on_queue_wait(taken_at - item.submitted, "ok")
        try:
            clips = [item.clip for item in batch]
            outputs = await asyncio.get_running_loop().run_in_executor(self._model_thread, self.infer, clips)
        except asyncio.CancelledError:
            _fail(batch, ServiceError(ErrorCode.NOT_READY, "the service shut down before this batch finished"))
            raise
        except Exception as exc:  # a failed batch fails its callers, never the worker
            log.exception("batch of %d clips failed", len(batch))
            _fail(batch, ServiceError(ErrorCode.INTERNAL_ERROR, f"inference failed: {type(exc).__name__}"))
            return
        seconds = time.perf_counter() - taken_at
        self.observer.on_batch(len(batch), seconds)
        probabilities, embeddings, images = (
            (*outputs, None, None)[:3] if isinstance(outputs, tuple) else (outputs, None, None)
        )
        for row, item in enumerate(batch):
            if not item.future.done():
                embedding = None if embeddings is None else embeddings[row]
                image = None if images is None else images[row]
                waited = taken_at - item.submitted
                item.future.set_result(BatchResult(probabilities[row], waited, seconds, len(batch), embedding, image))

    async def close(self, drain_timeout_s: float) -> None:
        """Refuse new clips, let queued and running ones finish (up to the timeout), then stop the worker."""
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout_s)
        except TimeoutError:
            log.warning("drain timed out with %d clips queued", self.depth + len(self._waiting))
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        left = [item for queue in (*self._lanes.values(), self._waiting) for item in queue]
        _fail(left, ServiceError(ErrorCode.NOT_READY, "the service shut down"))
        for queue in (*self._lanes.values(), self._waiting):
            queue.clear()
        self._model_thread.shutdown(wait=True)


def _fail(items: list[_Item], error: ServiceError) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
        item.queued.set()  # a caller still waiting for room sees the failure
