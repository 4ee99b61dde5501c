"""The service's live streams: adding (allow-list first), listing, removing, the streams file, the events each
stream sends to its readers, and the listeners of ended tracks. A stream that ends by itself (a file's end, a
failure) stays listed with its status, but only the newest ``max_streams`` such streams do, so that ended streams
and their metric series do not pile up.

Everything here runs on the event loop; each stream's threads reach it through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..backend import ModelBackend
from ..errors import ErrorCode, ServiceError
from ..inference import StartupError
from ..metrics import Metrics
from ..settings import Settings
from ..tracks import Detector
from .sources import check_source
from .status import StreamStatus
from .stream import Event, Stream, StreamConfig
from .tracks import TrackEnded

log = logging.getLogger(__name__)

CLOSED = None  # what an events reader's queue gets when its stream has stopped
Events = asyncio.Queue[Event | None]
# An event listener: (event, thumbnail()) -> None, on the event loop; thumbnail() copies the track's best picture.
EventListener = Callable[
    [Event, Callable[[], np.ndarray | None]], None
]  # an events reader's queue: events, then CLOSED


class StreamSpec(BaseModel):
    """A stream to open: the body of POST /streams, and each item of VTFPAR_STREAMS_FILE."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["gate-3"])
    url: str = Field(
        min_length=1,
        max_length=2000,
        pattern="^[!-~]+$",  # printable ASCII: CR/LF would reach the camera as a header (checked again by sources)
        examples=["rtsp://10.0.0.7:554/stream1"],
    )
    detection_interval: int | None = Field(
        None, ge=1, description="The detector runs on every k-th frame (default VTFPAR_STREAM_DETECTION_INTERVAL)."
    )
    update_s: float | None = Field(
        None, gt=0, description="Seconds between a track's attribute updates (default VTFPAR_STREAM_UPDATE_S)."
    )
    rtsp_transport: str = Field("tcp", pattern="^(tcp|udp)$", description="RTSP only: RTP over tcp or udp.")


class Streams(Protocol):
    """What the service and the /streams routes need of the streams: :class:`StreamManager` runs them in this
    process, ``app.ray.streams.RayStreams`` in camera actors on a Ray cluster."""

    def add_track_end_listener(self, callback: Callable[[TrackEnded], None]) -> None: ...
    def add_event_listener(self, callback: EventListener) -> None: ...
    async def start(self) -> None: ...
    def begin_stop(self) -> None: ...
    async def stop(self) -> None: ...
    async def open(self, spec: StreamSpec) -> StreamStatus: ...
    async def statuses(self) -> list[StreamStatus]: ...
    async def status(self, stream_id: str) -> StreamStatus: ...
    async def remove(self, stream_id: str) -> None: ...
    async def watch(self, stream_id: str) -> Watched: ...
    async def events(self, stream_id: str) -> AsyncIterator[Event]: ...


class Watched(Protocol):
    """A stream as its preview sees it."""

    @property
    def ended(self) -> bool: ...
    def snapshot(self) -> tuple[np.ndarray, list[tuple[int, np.ndarray]], dict[int, np.ndarray | None]] | None: ...


class StreamManager:
    def __init__(self, settings: Settings, backend: ModelBackend, metrics: Metrics, detector: Detector | None) -> None:
        self.settings, self.backend, self.metrics, self.detector = settings, backend, metrics, detector
        self.streams: dict[str, Stream] = {}
        self._readers: dict[str, set[Events]] = {}
        self._track_end_listeners: list[Callable[[TrackEnded], None]] = []
        self._event_listeners: list[EventListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task | None = None
        self._finished: list[str] = []  # ids of streams that ended by themselves and are still listed, oldest first

    def add_track_end_listener(self, callback: Callable[[TrackEnded], None]) -> None:
        """``callback(TrackEnded)`` for every ended track of every stream, on the event loop (it must not block)."""
        self._track_end_listeners.append(callback)

    def add_event_listener(self, callback: EventListener) -> None:
        """``callback(event, thumbnail)`` for every ``track_update`` and ``track_end`` of every stream, on the event
        loop (it must not block); ``thumbnail()`` gives the track's best picture so far, when it is wanted."""
        self._event_listeners.append(callback)

    async def start(self) -> None:
        """Open the streams of VTFPAR_STREAMS_FILE; a file that cannot be read, or a stream it may not open, stops
        the start with the reason."""
        self._loop = asyncio.get_running_loop()
        path = self.settings.streams_file
        if path is None:
            return
        for spec in read_streams_file(path):
            try:
                self.add(spec)
            except ServiceError as exc:
                raise StartupError(f"VTFPAR_STREAMS_FILE={path}: stream {spec.name!r}: {exc.message}") from None

    def add(self, spec: StreamSpec) -> Stream:
        settings = self.settings
        if self._stopping is not None:  # nothing would stop a stream started now
            raise ServiceError(ErrorCode.NOT_READY, "the service is shutting down: no new streams")
        source = check_source(  # before any connection
            spec.url, settings.stream_sources, spec.rtsp_transport, settings.stream_playlist_sources
        )
        if self.detector is None:
            raise ServiceError(
                ErrorCode.DETECTION_OFF, "streams need the person detector, and detection is off (VTFPAR_DETECTOR)"
            )
        if sum(not stream.finished for stream in self.streams.values()) >= settings.max_streams:
            raise ServiceError(
                ErrorCode.TOO_MANY_STREAMS, f"{settings.max_streams} streams are open already (VTFPAR_MAX_STREAMS)"
            )
        assert self._loop is not None, "start() first"
        stream_id = new_stream_id()
        stream = Stream(
            stream_id,
            spec.name,
            source,
            stream_config(settings, spec),
            self.detector,
            self.backend,
            self.metrics.streams.labels(stream_id),
            self._loop,
            on_event=self._on_event,
            on_track_end=self._on_track_end,
            on_finished=self._on_finished,
        )
        self.streams[stream_id] = stream
        self._readers[stream_id] = set()
        stream.start()
        log.info("stream %s (%s) opened: %s", stream_id, spec.name, source.shown)
        return stream

    # What the /streams routes call: the same calls reach the camera actors on Ray (``app.ray.streams``).
    async def open(self, spec: StreamSpec) -> StreamStatus:
        return self.add(spec).status()

    async def statuses(self) -> list[StreamStatus]:
        return [stream.status() for stream in self.streams.values()]

    async def status(self, stream_id: str) -> StreamStatus:
        return self.get(stream_id).status()

    async def watch(self, stream_id: str) -> Stream:
        """What the preview draws: ``snapshot()`` and ``ended``."""
        return self.get(stream_id)

    async def events(self, stream_id: str) -> AsyncIterator[Event]:
        """The stream's events from now on, until it stops; 404 at once for an unknown stream."""
        queue = self.subscribe(stream_id)

        async def read() -> AsyncIterator[Event]:
            try:
                while (event := await queue.get()) is not CLOSED:
                    yield event
            finally:
                self.unsubscribe(stream_id, queue)

        return read()

    def get(self, stream_id: str) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no stream {stream_id!r}")
        return stream

    async def remove(self, stream_id: str) -> None:
        stream = self.get(stream_id)
        del self.streams[stream_id]  # at once: a second DELETE while this one waits gets 404
        await self._end(stream)
        self._forget(stream_id)
        log.info("stream %s removed", stream_id)

    def _forget(self, stream_id: str) -> None:
        for queue in self._readers.pop(stream_id, ()):
            _offer(queue, CLOSED)
        self.metrics.streams.remove(stream_id)
        if stream_id in self._finished:
            self._finished.remove(stream_id)

    def begin_stop(self) -> None:
        """Start ending every stream (SIGTERM, on the event loop), so that events readers get their ``track_end``
        events and close before the server waits for open connections."""
        if self._stopping is None and self._loop is not None:
            self._stopping = self._loop.create_task(self._end_all(), name="streams-stop")

    async def stop(self) -> None:
        self.begin_stop()
        if self._stopping is not None:
            await self._stopping

    async def _end_all(self) -> None:
        await asyncio.gather(*(self._end(stream) for stream in list(self.streams.values())))

    async def _end(self, stream: Stream) -> None:
        await stream.stop()
        for queue in self._readers.get(stream.id, ()):
            _offer(queue, CLOSED)

    # Events --------------------------------------------------------------------------------------------------------
    def subscribe(self, stream_id: str) -> Events:
        """A bounded queue of the stream's events (oldest dropped when the reader falls behind; ``CLOSED`` last)."""
        stream = self.get(stream_id)
        queue: Events = asyncio.Queue(self.settings.stream_event_buffer)
        self._readers[stream_id].add(queue)
        if stream.ended:
            _offer(queue, CLOSED)
        return queue

    def unsubscribe(self, stream_id: str, queue: Events) -> None:
        self._readers.get(stream_id, set()).discard(queue)

    def _on_event(self, stream: Stream, event: Event) -> None:
        for queue in self._readers.get(stream.id, ()):
            _offer(queue, event)
        thumbnail = functools.partial(stream.thumbnail, event.track.track_id)
        for on_event in self._event_listeners:
            try:
                on_event(event, thumbnail)
            except Exception:  # as below: a listener's bug never stops the stream
                log.exception("an event listener failed")

    def _on_track_end(self, track: TrackEnded) -> None:
        for listener in self._track_end_listeners:
            try:
                listener(track)
            except Exception:  # one listener's bug never stops the others, nor the stream
                log.exception("a track-end listener failed")

    def _on_finished(self, stream: Stream) -> None:
        """The source ended (a file's end) or failed: end its tracks and close its readers; it stays listed, and
        the oldest such stream beyond ``max_streams`` is forgotten."""
        assert self._loop is not None
        self._loop.create_task(self._end(stream), name=f"stream-{stream.id}-end")
        if stream.id not in self.streams:
            return
        self._finished.append(stream.id)
        while len(self._finished) > self.settings.max_streams:
            oldest = self._finished[0]
            self.streams.pop(oldest, None)
            self._forget(oldest)


def new_stream_id() -> str:
    return uuid.uuid4().hex[:12]


def stream_config(settings: Settings, spec: StreamSpec) -> StreamConfig:
    """A stream's configuration: its own settings where ``spec`` has them, the service's otherwise."""
    return StreamConfig(
        detection_interval=spec.detection_interval or settings.stream_detection_interval,
        update_s=spec.update_s or settings.stream_update_s,
        max_tracks=settings.stream_max_tracks,
        track_lost_s=settings.stream_track_lost_s,
        open_timeout_s=settings.stream_open_timeout_s,
        read_timeout_s=settings.stream_read_timeout_s,
        retry_max_s=settings.stream_retry_max_s,
        give_up_s=settings.stream_give_up_s,
        decode_threads=settings.decode_threads,
    )


def _offer(queue: Events, item: Event | None) -> None:
    if queue.full():
        queue.get_nowait()  # the reader is too slow: it loses the oldest event, never the service's memory
    queue.put_nowait(item)


def read_streams_file(path: Path) -> list[StreamSpec]:
    try:
        return TypeAdapter(list[StreamSpec]).validate_python(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise StartupError(f"VTFPAR_STREAMS_FILE={path} cannot be read: {first_line}") from None
