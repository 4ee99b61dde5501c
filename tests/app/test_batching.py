"""The dynamic batcher, driven with a fake model: batches form, every caller gets its own row, and the queue's
bounds (size, timeout, cancellation, drain) hold."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from app.batching import Batcher, Lane
from app.errors import ErrorCode, ServiceError

# anyio's pytest plugin (anyio ships with Starlette) runs the async tests.
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class FakeModel:
    """Row i of the answer is [clip id, batch size]; ``gate`` can hold a batch on the model thread."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.seconds = 0.0  # each batch's forward pass

    def __call__(self, clips: list[torch.Tensor]) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(10)
        time.sleep(self.seconds)
        ids = [int(c.flatten()[0]) for c in clips]
        self.batches.append(ids)
        return np.array([[i, len(ids)] for i in ids], dtype=np.float32)


def clip(clip_id: int) -> torch.Tensor:
    return torch.full((2, 3, 4, 4), float(clip_id))


def make(model, **kw) -> Batcher:
    options = dict(max_batch_clips=4, max_batch_wait_ms=50, max_queue=64, queue_timeout_s=5.0)
    return Batcher(model, **{**options, **kw})


async def _wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_concurrent_clips_share_batches_and_each_gets_its_own_row():
    model = FakeModel()
    batcher = make(model)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(clip(i)) for i in range(10)))
    assert [int(r.probabilities[0]) for r in results] == list(range(10))
    assert sorted(i for batch in model.batches for i in batch) == list(range(10))
    assert max(len(b) for b in model.batches) == 4 and len(model.batches) == 3
    assert all(r.batch_size == r.probabilities[1] for r in results)
    assert all(r.embedding is None for r in results)  # a runner without embeddings (ONNX)
    await batcher.close(1)


async def test_each_clip_gets_its_own_embedding_row_when_the_model_gives_embeddings():
    model = FakeModel()

    def with_embeddings(clips):
        probabilities = model(clips)
        return probabilities, probabilities[:, :1] * np.ones((1, 3), np.float32)

    batcher = make(with_embeddings)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(clip(i)) for i in range(6)))
    assert [r.embedding.tolist() for r in results] == [[float(i)] * 3 for i in range(6)]
    await batcher.close(1)


async def test_a_lone_clip_waits_at_most_max_batch_wait_ms():
    model = FakeModel()
    batcher = make(model, max_batch_wait_ms=20)
    batcher.start()
    result = await asyncio.wait_for(batcher.submit(clip(7)), 1)
    assert result.batch_size == 1 and result.queue_s < 0.5
    await batcher.close(1)


async def test_a_full_queue_refuses_and_a_stale_clip_times_out():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=1, max_queue=1, queue_timeout_s=0.2)
    batcher.start()
    running = asyncio.create_task(batcher.submit(clip(1)))
    await asyncio.to_thread(model.entered.wait, 5)
    queued = asyncio.create_task(batcher.submit(clip(2)))
    await _wait_for(lambda: batcher.depth == 1)
    with pytest.raises(ServiceError) as full:
        await batcher.submit(clip(3))
    assert full.value.code == ErrorCode.QUEUE_FULL
    with pytest.raises(ServiceError) as stale:
        await queued
    assert stale.value.code == ErrorCode.QUEUE_TIMEOUT and batcher.depth == 0
    model.gate.set()
    # The running clip is past the queue: its timeout no longer applies.
    assert int((await running).probabilities[0]) == 1
    assert model.batches == [[1]]
    await batcher.close(1)


async def test_a_cancelled_caller_leaves_the_queue():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=1)
    batcher.start()
    running = asyncio.create_task(batcher.submit(clip(1)))
    await asyncio.to_thread(model.entered.wait, 5)
    gone = asyncio.create_task(batcher.submit(clip(2)))
    await _wait_for(lambda: batcher.depth == 1)
    gone.cancel()
    await _wait_for(lambda: batcher.depth == 0)
    model.gate.set()
    await running
    assert int((await batcher.submit(clip(3))).probabilities[0]) == 3
    assert model.batches == [[1], [3]], "the cancelled clip reached the model"
    await batcher.close(1)


async def test_a_failing_batch_fails_its_callers_not_the_worker():
    calls = []

    def flaky(clips):
        calls.append(len(clips))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: out of memory")
        return np.zeros((len(clips), 2), dtype=np.float32)

    batcher = make(flaky)
    batcher.start()
    with pytest.raises(ServiceError) as failed:
        await batcher.submit(clip(1))
    assert failed.value.code == ErrorCode.INTERNAL_ERROR
    assert (await batcher.submit(clip(2))).batch_size == 1
    await batcher.close(1)


async def test_close_finishes_accepted_clips_then_refuses_new_ones():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=2, max_batch_wait_ms=0)
    batcher.start()
    accepted = [asyncio.create_task(batcher.submit(clip(i))) for i in range(5)]
    await asyncio.to_thread(model.entered.wait, 5)
    closing = asyncio.create_task(batcher.close(5))
    await asyncio.sleep(0.05)
    with pytest.raises(ServiceError) as refused:
        await batcher.submit(clip(9))
    assert refused.value.code == ErrorCode.NOT_READY
    model.gate.set()
    results = await asyncio.gather(*accepted)
    await closing
    assert [int(r.probabilities[0]) for r in results] == list(range(5))


async def test_background_clips_fill_only_the_room_request_clips_leave():
    model = FakeModel()
    model.gate.clear()  # hold the first batch so that the rest queue up behind it
    batcher = make(model, max_batch_clips=3)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(clip(0)))
    await _wait_for(model.entered.is_set)
    # Streams queued first, requests after: requests still go first, streams fill what is left.
    streams = [asyncio.ensure_future(batcher.submit(clip(10 + i), Lane.STREAM)) for i in range(3)]
    requests = [asyncio.ensure_future(batcher.submit(clip(20 + i))) for i in range(2)]
    await _wait_for(lambda: batcher.depth == 5)
    model.gate.set()
    await asyncio.gather(first, *streams, *requests)
    assert model.batches == [[0], [20, 21, 10], [11, 12]]
    await batcher.close(1)


async def test_background_clips_have_their_own_bound_and_cannot_fill_the_request_queue():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=1, max_queue=2)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(clip(0)))
    await _wait_for(model.entered.is_set)
    streams = [asyncio.ensure_future(batcher.submit(clip(10 + i), Lane.STREAM)) for i in range(2)]
    await _wait_for(lambda: batcher.depth == 2)
    with pytest.raises(ServiceError) as full:
        await batcher.submit(clip(12), Lane.STREAM)
    assert full.value.code == ErrorCode.QUEUE_FULL
    request = asyncio.ensure_future(batcher.submit(clip(20)))  # a request still finds room
    model.gate.set()
    await asyncio.gather(running, request, *streams)
    assert model.batches == [[0], [20], [10], [11]]
    await batcher.close(1)


async def test_footage_beyond_the_queue_waits_for_room_in_order_instead_of_being_refused():
    model = FakeModel()
    model.seconds = 0.15
    batcher = make(model, max_batch_clips=2, max_queue=2, queue_timeout_s=0.5)
    batcher.start()
    # Two requests' tracks, five clips each: five times what the queue holds, and five batches of 0.15 s, so that
    # the last clips wait longer than the queue timeout, which counts only once they are in the queue.
    first = [asyncio.ensure_future(batcher.submit(clip(10 + i), Lane.FOOTAGE)) for i in range(5)]
    second = [asyncio.ensure_future(batcher.submit(clip(20 + i), Lane.FOOTAGE)) for i in range(5)]
    results = await asyncio.gather(*first, *second)
    assert [int(r.probabilities[0]) for r in results] == [*range(10, 15), *range(20, 25)]
    assert model.batches == [[10, 11], [12, 13], [14, 20], [21, 22], [23, 24]]
    assert max(r.queue_s for r in results) > 0.5
    await batcher.close(1)


async def test_predict_clips_go_before_footage_and_footage_before_streams():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=3, max_queue=2)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(clip(0)))
    await _wait_for(model.entered.is_set)
    streams = [asyncio.ensure_future(batcher.submit(clip(30 + i), Lane.STREAM)) for i in range(2)]
    footage = [asyncio.ensure_future(batcher.submit(clip(10 + i), Lane.FOOTAGE)) for i in range(3)]
    await _wait_for(lambda: batcher.depth == 4)
    predict = [asyncio.ensure_future(batcher.submit(clip(20 + i))) for i in range(2)]  # footage leaves them room
    await _wait_for(lambda: batcher.depth == 6)
    model.gate.set()
    await asyncio.gather(running, *streams, *footage, *predict)
    assert model.batches == [[0], [20, 21, 10], [11, 12, 30], [31]]
    await batcher.close(1)


async def test_a_cancelled_footage_request_leaves_the_queue_and_the_line_for_room():
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, max_batch_clips=1, max_queue=1)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(clip(0)))
    await _wait_for(model.entered.is_set)
    leaving = [asyncio.ensure_future(batcher.submit(clip(10 + i), Lane.FOOTAGE)) for i in range(3)]
    staying = asyncio.ensure_future(batcher.submit(clip(20), Lane.FOOTAGE))
    await _wait_for(lambda: batcher.depth == 1)
    for task in leaving:
        task.cancel()
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(running, staying)
    assert model.batches == [[0], [20]]
    await batcher.close(1)
