"""One camera on Ray: an actor running ``app.streams.Stream``, the single-process service's reader, detector,
tracker and crops, unchanged.

What differs from one process is only where things go: the stream's clips go to the Model deployment as
stream-lane clips (its Batcher runs them in the room requests leave, so a camera never slows ``/predict`` down);
its events go to a numbered buffer that events readers on any ingress replica poll (:meth:`Camera.events`), and
to the alert rules, matched here (the ingress replicas' outbox workers deliver what fires); the tracks it ends are
stored here, where they end, so each is stored once; its series reach ``/metrics`` through the
Coordinator, as a model replica's do.

The actor keeps its own event loop on a thread (the stream's threads hand their work to a loop), and takes Ray
calls on other threads: a long events poll never holds up a status call. Ray restarts a dead actor
(``max_restarts=-1``) with the same arguments, so the same stream id opens again; the registry counts the restart
as a reconnect (``app.ray.registry``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import uuid
from dataclasses import dataclass

import ray
import torch

from ..alerts import AlertMetrics, Alerts, AlertStore
from ..metrics import Metrics
from ..settings import Settings
from ..store import ModelSpec, TrackStore
from ..store.recording import StreamRecorder
from ..streams import Event, Stream, StreamSpec, TrackEnded
from ..streams.manager import stream_config
from ..streams.sources import check_source
from ..tracks import Detector, load_scene
from .backend import RayBackend
from .coordinator import CAMERA, ReplicaReport, Reporter
from .detection import SharedDetector, node_detector
from .gpus import hide_gpus
from .logs import configure_replica_logging

log = logging.getLogger(__name__)

# Ray calls at once: status, stop and snapshot calls beside the events polls of this many readers.
MAX_CALLS = 64
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Events:
    """An answer to an events poll: the events after the reader's cursor, numbered, and where the reader is now."""

    incarnation: str  # changes when Ray restarts the actor (numbering starts again)
    events: list[tuple[int, Event]]
    last: int
    closed: bool  # the stream has stopped and these are its last events


def actor_name(stream_id: str) -> str:
    return f"vtfpar-camera-{stream_id}"


@dataclass(frozen=True)
class CameraResources:
    cpus: float  # each camera actor's
    node_detector_frames: int  # 0: a detector per camera; N: one per node, N frames a batch (app.ray.detection)
    node_detector_gpus: float

    @classmethod
    def of(cls, options) -> CameraResources:  # an app.ray.app.AppOptions
        return cls(options.camera_cpus, options.node_detector_frames, options.node_detector_gpus)


def start_camera(
    stream_id: str, spec: StreamSpec, settings: Settings, model, coordinator, resources: CameraResources, detector
):
    """A new :class:`Camera` actor (its handle), restarted by Ray whenever it dies until it is killed."""
    actor = ray.remote(Camera).options(
        name=actor_name(stream_id),
        num_cpus=resources.cpus,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=MAX_CALLS,
    )
    return actor.remote(stream_id, spec, settings, model, coordinator, resources, detector)


class Camera:
    def __init__(
        self,
        stream_id: str,
        spec: StreamSpec,
        settings: Settings,
        model,
        coordinator,
        resources: CameraResources,
        detector: Detector | None = None,
    ) -> None:
        configure_replica_logging(settings)
        hide_gpus()  # its detector runs on the CPU, or on the node's shared detector (app.ray.detection)
        self.id = stream_id
        self.incarnation = uuid.uuid4().hex
        self._changed = threading.Condition()  # guards the buffer below
        self._events: collections.deque[tuple[int, Event]] = collections.deque(maxlen=settings.stream_event_buffer)
        self._last = 0
        self._closed = False
        self.metrics = Metrics()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"camera-{stream_id}-loop", daemon=True).start()
        self._run(self._open(spec, settings, model, coordinator, resources, detector))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(
        self,
        spec: StreamSpec,
        settings: Settings,
        model,
        coordinator,
        resources: CameraResources,
        detector: Detector | None,
    ) -> None:
        description = await model.describe.remote()
        if resources.node_detector_frames:
            shared = node_detector(settings, resources.node_detector_frames, resources.node_detector_gpus, detector)
            detector = SharedDetector(shared)
        else:
            scene = await asyncio.to_thread(load_scene, settings, torch.device("cpu"), detector)
            assert scene is not None, "the registry opens no camera while detection is off"
            detector = scene.detector
        self.store = await asyncio.to_thread(TrackStore.from_settings, settings)
        self.recorder = StreamRecorder(self.store, ModelSpec.of(description))
        # Rules match the live tracks here, where their events are made; the ingress replicas deliver the alerts.
        self.alerts = Alerts(
            AlertStore(self.store.engine), ModelSpec.of(description), settings, AlertMetrics(self.metrics.registry)
        )
        await self.alerts.start(deliver=False)
        source = check_source(spec.url, settings.stream_sources, spec.rtsp_transport, settings.stream_playlist_sources)
        backend = RayBackend(model, description)
        self.stream = Stream(
            self.id,
            spec.name,
            source,
            stream_config(settings, spec),
            detector,
            backend,
            self.metrics.streams.labels(self.id),
            self._loop,
            on_event=self._on_event,
            on_track_end=self._on_track_end,
            on_finished=self._on_finished,
        )
        self.stream.start()
        self.reporter = Reporter(coordinator, self._report)

    # Called on the actor's loop ----------------------------------------------------------------------------------
    def _on_event(self, stream: Stream, event: Event) -> None:
        with self._changed:  # events carry a track's fixed-size state (no boxes, no thumbnail) across the wire
            self._last += 1
            self._events.append((self._last, event))
            self._changed.notify_all()
        try:
            self.alerts.stream_event(event, functools.partial(stream.thumbnail, event.track.track_id))
        except Exception:  # as in one process: a rule's bug never stops the stream
            log.exception("the alerts could not match an event")

    def _on_track_end(self, track: TrackEnded) -> None:
        self.recorder.track_ended(track)

    def _on_finished(self, stream: Stream) -> None:
        self._loop.create_task(self._end(), name=f"camera-{self.id}-end")

    async def _end(self) -> None:
        await self.stream.stop()  # the open tracks' track_end events
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _report(self) -> ReplicaReport:
        return ReplicaReport(actor_name(self.id), CAMERA, self.metrics.exposition())

    # Ray calls -----------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {**self.stream.status().model_dump(), "incarnation": self.incarnation}

    def events(self, incarnation: str | None, after: int | None, wait_s: float) -> Events:
        """The events numbered after ``after`` (None: from now on), waiting up to ``wait_s`` for one. A reader
        that fell more than ``VTFPAR_STREAM_EVENT_BUFFER`` events behind loses the oldest, as in one process."""
        with self._changed:
            if incarnation != self.incarnation:  # a reader new to this incarnation
                after = self._last if after is None or incarnation is None else 0
            assert after is not None
            self._changed.wait_for(lambda: self._last > after or self._closed, timeout=wait_s)
            news = [(number, event) for number, event in self._events if number > after]
            return Events(self.incarnation, news, self._last, self._closed)

    def snapshot(self):
        """What the preview draws, and whether the stream has ended."""
        return self.stream.snapshot(), self.stream.ended

    def stop(self) -> None:
        """Ends the stream's open tracks (``track_end``) and stores them; readers get their last events."""
        self._run(self._stop())

    async def _stop(self) -> None:
        if not self.stream.ended:
            await self._end()
        self.reporter.stop()
        await asyncio.wait_for(self.alerts.stop(), STOP_TIMEOUT_S)  # the last tracks' alerts are stored
        await asyncio.wait_for(self.recorder.drain(), STOP_TIMEOUT_S)
        await asyncio.to_thread(self.store.close)
