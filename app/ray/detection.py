"""One person detector per node for its camera actors: frames of several cameras go through the detector as one
batch, as DeepStream's stream muxer does, so that a GPU detector runs one batch where it would run one call per
camera (``--node-detector-frames N``; 0, the default, leaves each camera its own detector, right for HOG on CPU).

Ray's ``serve.batch`` is not used: it batches a deployment's requests, and this actor is no deployment but one
actor per node, pinned to it, that the node's cameras find by name.
"""

from __future__ import annotations

import asyncio

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..settings import Settings
from ..tracks import Detector, load_scene

# How long the first frame of a batch waits for others: a fifth of a frame interval at 10 fps, small next to
# the detector's own time.
MAX_WAIT_S = 0.02
Found = tuple[np.ndarray, np.ndarray]  # one frame's boxes (x0, y0, x1, y1) and scores


class FrameBatcher:
    """Frames from many callers, through ``detector.detect`` in batches of at most ``max_frames``: a batch goes
    when it is full or ``max_wait_s`` after its first frame. The detector runs on a worker thread, one batch at a
    time; frames arriving meanwhile make the next batch."""

    def __init__(self, detector: Detector, max_frames: int, max_wait_s: float = MAX_WAIT_S) -> None:
        self.detector, self.max_frames, self.max_wait_s = detector, max_frames, max_wait_s
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Found]]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-detector")

    async def detect(self, frame: np.ndarray) -> Found:
        future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        await self._queue.put((frame, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_frames:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            try:
                found = await asyncio.to_thread(self.detector.detect, [frame for frame, _ in batch])
            except Exception as exc:  # every camera of the batch hears it; the next batch tries again
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, found, strict=True):
                if not future.done():
                    future.set_result(result)

    def close(self) -> None:
        self._task.cancel()


class NodeDetector:
    """The actor holding a node's :class:`FrameBatcher` (async: one event loop takes every camera's frames)."""

    def __init__(self, settings: Settings, max_frames: int, detector: Detector | None) -> None:
        device = torch.device("cuda" if torch.cuda.is_available() and settings.device != "cpu" else "cpu")
        scene = load_scene(settings, device, detector)
        assert scene is not None, "the registry opens no camera while detection is off"
        self.detector, self.max_frames = scene.detector, max_frames
        self.batcher: FrameBatcher | None = None

    async def detect(self, frame: np.ndarray) -> Found:
        if self.batcher is None:  # made on the actor's event loop
            self.batcher = FrameBatcher(self.detector, self.max_frames)
        return await self.batcher.detect(frame)


class SharedDetector:
    """A camera's detector (``app.tracks.Detector``) that sends its frames to its node's :class:`NodeDetector`."""

    name = "node-shared"

    def __init__(self, node_detector) -> None:
        self.node_detector = node_detector

    def detect(self, frames: list[np.ndarray]) -> list[Found]:
        # Called on the stream's processing thread: waiting here holds up that camera only.
        return ray.get([self.node_detector.detect.remote(frame) for frame in frames])


def node_detector(settings: Settings, max_frames: int, gpus: float, detector: Detector | None):
    """The detector actor of the node this runs on, started by the first camera there."""
    node = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(NodeDetector)
        .options(
            name=f"vtfpar-detector-{node}",
            get_if_exists=True,
            num_gpus=gpus,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            max_restarts=-1,
        )
        .remote(settings, max_frames, detector)
    )
