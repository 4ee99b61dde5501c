"""A node's shared detector (``app.ray.detection.FrameBatcher``) on CPU with a stub detector: frames of several
cameras go through the detector together, each camera gets its own frame's answer, and no batch is larger than
asked. No Ray instance: the batching is plain asyncio."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install -e '.[ray]')")

from app.ray.detection import FrameBatcher  # noqa: E402


class StubDetector:
    """One box per frame whose left edge is the frame's value; records the batches; may be told to fail once."""

    name = "stub"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay_s = delay_s
        self.fail_next = False
        self._lock = threading.Lock()

    def detect(self, frames):
        with self._lock:
            self.batches.append(len(frames))
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("detector failed")
        threading.Event().wait(self.delay_s)
        return [(np.array([[f[0, 0, 0], 0, 10, 10]], np.float32), np.array([0.9], np.float32)) for f in frames]


def frame(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def test_frames_of_several_cameras_go_as_one_batch_and_each_gets_its_own_boxes():
    async def run():
        detector = StubDetector()
        batcher = FrameBatcher(detector, max_frames=8, max_wait_s=0.2)
        found = await asyncio.gather(*(batcher.detect(frame(camera)) for camera in (1, 2, 3)))
        batcher.close()
        return detector.batches, found

    batches, found = asyncio.run(run())
    assert batches == [3]
    assert [boxes[0, 0] for boxes, _ in found] == [1, 2, 3]


def test_no_batch_is_larger_than_asked_and_frames_arriving_meanwhile_make_the_next():
    async def run():
        detector = StubDetector(delay_s=0.05)
        batcher = FrameBatcher(detector, max_frames=2, max_wait_s=0.05)
        found = await asyncio.gather(*(batcher.detect(frame(camera)) for camera in range(7)))
        batcher.close()
        return detector.batches, found

    batches, found = asyncio.run(run())
    assert max(batches) == 2 and sum(batches) == 7
    assert [boxes[0, 0] for boxes, _ in found] == list(range(7))


def test_a_lone_frame_goes_after_the_wait_without_a_full_batch():
    async def run():
        detector = StubDetector()
        batcher = FrameBatcher(detector, max_frames=8, max_wait_s=0.05)
        found = await asyncio.wait_for(batcher.detect(frame(5)), 2)
        batcher.close()
        return detector.batches, found

    batches, (boxes, _) = asyncio.run(run())
    assert batches == [1] and boxes[0, 0] == 5


def test_a_failed_batch_fails_its_frames_only():
    async def run():
        detector = StubDetector()
        batcher = FrameBatcher(detector, max_frames=8, max_wait_s=0.05)
        detector.fail_next = True
        failed = await asyncio.gather(batcher.detect(frame(1)), batcher.detect(frame(2)), return_exceptions=True)
        later = await batcher.detect(frame(3))
        batcher.close()
        return failed, later

    failed, (boxes, _) = asyncio.run(run())
    assert all(isinstance(error, RuntimeError) for error in failed)
    assert boxes[0, 0] == 3
