"""One live stream: a ``Reader`` (reader.py) at the source's pace, a processing thread behind its one-frame slot,
and the events it sends.

The processing thread detects, tracks (ByteTrack), cuts and fits each track's crops, and every ``update_s`` of
stream time sends T crops of a track through the model as a background clip; the answers are fused on the event
loop (``LiveTrack.fuse``) and sent as ``track_update``. A track unseen for ``track_lost_s`` is sent as
``track_end``: after the answer of a clip still with the model (so that no update follows its end, and the ended
track includes that window), or after one last window if it never had one.

Everything a stream talks to is handed to it, so that another host (a Ray actor) runs the same class: the
``detector``; ``model`` (where clips go: ``prepare`` on the processing thread, ``submit`` awaited on ``loop``);
``on_event`` and ``on_track_end`` (where events and ended tracks go, called on ``loop``); ``on_finished`` (called
on ``loop`` when the source ends or fails); ``series`` (its metrics); ``clock``; and the reader's ``opener``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import av
import numpy as np

from ..batching import BatchResult, Lane
from ..errors import ServiceError
from ..inference import ModelDescription
from ..metrics import StreamSeries
from ..tracks import Detector
from .reader import Clock, Frame, FrameSlot, Opener, Rate, Reader, ReaderConfig, StreamState, SystemClock
from .sources import Source
from .status import StreamStatus
from .tracks import Cut, LiveTrack, Seen, TrackEnded, TrackState, cut, model_squares

log = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 0.2  # how often an idle processing thread looks at its stop flag
RING_CLIPS = 2  # a track's crop ring holds this many clips' worth of crops
RETRY_FIRST_S = 0.5  # the first reconnection wait; it doubles up to retry_max_s

EventKind = Literal["track_update", "track_end"]


@dataclass(frozen=True)
class StreamConfig:
    detection_interval: int
    update_s: float
    max_tracks: int
    track_lost_s: float
    open_timeout_s: float
    read_timeout_s: float
    retry_max_s: float
    give_up_s: float
    decode_threads: int

    def reader(self) -> ReaderConfig:
        return ReaderConfig(
            detection_interval=self.detection_interval,
            open_timeout_s=self.open_timeout_s,
            read_timeout_s=self.read_timeout_s,
            retry_first_s=RETRY_FIRST_S,
            retry_max_s=self.retry_max_s,
            give_up_s=self.give_up_s,
            decode_threads=self.decode_threads,
        )


@dataclass(frozen=True)
class Event:
    kind: EventKind
    track: TrackState


class ClipModel(Protocol):
    """Where a stream's clips go (``app.backend.ModelBackend`` is one)."""

    description: ModelDescription

    def prepare(self, frames: list[np.ndarray]) -> object: ...

    async def submit(self, clip: object, lane: Lane = Lane.PREDICT) -> BatchResult: ...


Snapshot = tuple[np.ndarray, list[tuple[int, np.ndarray]], dict[int, np.ndarray | None]]


class Stream:
    def __init__(
        self,
        stream_id: str,
        name: str,
        source: Source,
        config: StreamConfig,
        detector: Detector,
        model: ClipModel,
        series: StreamSeries,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[Stream, Event], None],
        on_track_end: Callable[[TrackEnded], None],
        on_finished: Callable[[Stream], None],
        clock: Clock | None = None,
        opener: Opener = av.open,
    ) -> None:
        self.id, self.name, self.source, self.config = stream_id, name, source, config
        self.detector, self.model, self.series, self.loop = detector, model, series, loop
        self.on_event, self.on_track_end, self.on_finished = on_event, on_track_end, on_finished
        self.clock = clock or SystemClock()
        self.ended = False  # stop() has sent the open tracks' ends
        self.frames_per_clip = model.description.frames_per_clip
        self._square = model_squares(model.description.preprocess)  # crops become model input as they are cut
        self.lag_s = 0.0
        self.created_at = self.clock.now()
        self._rate_processed = Rate()
        self._stop = threading.Event()
        self._stopped = False  # stop() was called before the source ended by itself
        slot = FrameSlot()
        self.reader = Reader(source, config.reader(), slot, self._stop, series, self._reader_ended, self.clock, opener)
        self._slot = slot
        # Guards ``tracks``, ``_closing``, ``latest`` and every LiveTrack's fields: the processing thread changes
        # them, the event loop fuses answers into them and reads them for events and the preview. Held for those
        # changes and copies only, never while crops are cut or clips prepared.
        self._lock = threading.Lock()
        self.tracks: dict[int, LiveTrack] = {}
        self._closing: dict[int, LiveTrack] = {}  # lost while a clip was with the model: its answer ends them
        self.latest: tuple[np.ndarray, list[tuple[int, np.ndarray]]] | None = None  # the last frame and its boxes
        self._tracker = _bytetrack(config.track_lost_s)
        self._reader_thread = threading.Thread(target=self.reader.run, name=f"stream-{stream_id}-reader", daemon=True)
        self._processor = threading.Thread(target=self._process, name=f"stream-{stream_id}-process", daemon=True)

    # Status ------------------------------------------------------------------------------------------------------
    @property
    def state(self) -> StreamState:
        reader_state = self.reader.state
        if self._stopped and reader_state not in ("stopped", "failed"):
            return "stopped"
        return reader_state

    @property
    def finished(self) -> bool:
        return self.state in ("stopped", "failed")

    def status(self) -> StreamStatus:
        now = self.clock.monotonic()
        reader = self.reader
        return StreamStatus(
            id=self.id,
            name=self.name,
            url=self.source.shown,
            state=self.state,
            fps_in=round(reader.rate_in.per_second(now), 2),
            fps_processed=round(self._rate_processed.per_second(now), 2),
            frames_dropped=reader.frames_dropped,
            lag_s=round(self.lag_s, 3),
            active_tracks=len(self.tracks),
            reconnects=reader.reconnects,
            last_error=reader.last_error,
            detection_interval=self.config.detection_interval,
            update_s=self.config.update_s,
            created_at=self.created_at.isoformat(),
        )

    def snapshot(self) -> Snapshot | None:
        """The last processed frame, its (track id, box) pairs, and those tracks' fused probabilities (None for a
        track without a window yet); None before the first frame."""
        with self._lock:
            if self.latest is None:
                return None
            frame, shown = self.latest
            fused = {}
            for track_id, _ in shown:
                track = self.tracks.get(track_id)
                fused[track_id] = track.probabilities if track is not None else None
            return frame, shown, fused

    def thumbnail(self, track_id: int) -> np.ndarray | None:
        """The best picture of a live track so far (a copy; None once the track is gone or before any)."""
        with self._lock:
            track = self.tracks.get(track_id) or self._closing.get(track_id)
            return None if track is None or track.thumbnail is None else track.thumbnail.copy()

    # Lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._reader_thread.start()
        self._processor.start()

    async def stop(self) -> None:
        """Stop reading and processing, and end every open track (``track_end``, no last window: the model may be
        shutting down too). Returns once the processing thread is done; the reader follows within a read timeout."""
        self._stopped = True
        self._stop.set()
        await asyncio.to_thread(self._processor.join)
        with self._lock:
            tracks = [*self.tracks.values(), *self._closing.values()]
            self.tracks, self._closing = {}, {}
        for track in tracks:
            self._end(track)
        self._slot.take(0)
        with self._lock:
            self.latest = None  # a stream kept listed after it ends keeps no frame
        self.ended = True

    def _reader_ended(self) -> None:
        """On the reader's thread: the source ended or failed by itself."""
        self.loop.call_soon_threadsafe(self.on_finished, self)

    # Processing thread -------------------------------------------------------------------------------------------
    def _process(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.take(TAKE_TIMEOUT_S)
            if frame is None:
                continue
            try:
                self._process_frame(frame)
            except Exception:  # a bad frame or a detector bug costs this frame, never the stream or the service
                log.exception("stream %s: processing a frame failed", self.id)
            now = self.clock.monotonic()
            self.lag_s = now - frame.arrived
            self.series.lag.set(self.lag_s)
            self._rate_processed.tick(now)

    def _process_frame(self, frame: Frame) -> None:
        import supervision as sv

        [(boxes, scores)] = self.detector.detect([frame.rgb])
        self.series.detections.inc(len(scores))
        detections = sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=np.asarray(scores, np.float32)
        )
        tracked = self._tracker.update(detections, timestamp=frame.stream_s)
        assert tracked.tracker_id is not None
        cuts = self._cut(frame.rgb, tracked.xyxy, tracked.tracker_id)
        seen = Seen(frame.stream_s, frame.at)
        shown: list[tuple[int, np.ndarray]] = []
        clips: list[tuple[LiveTrack, list[np.ndarray]]] = []
        finals: list[tuple[LiveTrack, list[np.ndarray]]] = []
        with self._lock:
            for track_id, box, piece in cuts:
                track = self.tracks.get(track_id)
                if track is None:
                    track = self.tracks[track_id] = LiveTrack(track_id, seen, RING_CLIPS * self.frames_per_clip)
                track.record(seen, box, piece)
                shown.append((track_id, box))
                if self._window_due(track, frame.stream_s):
                    clips.append((track, self._take_clip(track)))
            lost_s = self.config.track_lost_s
            for track in [t for t in self.tracks.values() if frame.stream_s - t.last_seen.stream_s > lost_s]:
                del self.tracks[track.track_id]
                if not track.pending:  # one last window if none ran yet: a short visit still gets its attributes
                    finals.append((track, self._take_clip(track) if track.windows == 0 and track.crops else []))
                if track.pending:  # the answer ends it (or stop() does, if it comes first)
                    track.lost = True
                    self._closing[track.track_id] = track
            self.latest = (frame.rgb, shown)
            self.series.active_tracks.set(len(self.tracks))
        for track, crops in clips:
            self._send(track, self.model.prepare(crops), end=False)
        for track, crops in finals:
            self._send(track, self.model.prepare(crops) if crops else None, end=True)

    def _cut(self, rgb: np.ndarray, boxes: np.ndarray, ids: np.ndarray) -> list[tuple[int, np.ndarray, Cut]]:
        """Each confirmed track's crop, prepared without the lock: only this thread adds tracks or changes their
        boxes and thumbnails, so reading them here needs none."""
        cuts = []
        room = self.config.max_tracks - len(self.tracks)
        for box, raw_id in zip(boxes, ids, strict=True):
            if raw_id < 0:
                continue  # not (yet) a confirmed track
            track_id = int(raw_id) + 1
            track = self.tracks.get(track_id)
            if track is None:
                if room <= 0:
                    continue
                room -= 1
            best = track.thumbnail_rank if track is not None else (False, -1.0)
            cuts.append((track_id, box, cut(rgb, box, self._square, best)))
        return cuts

    def _window_due(self, track: LiveTrack, stream_s: float) -> bool:
        if track.pending or not track.crops:
            return False
        # The first window waits for a full clip of crops; later ones come every update_s.
        if track.last_window_s is None:
            return len(track.crops) >= self.frames_per_clip
        return stream_s - track.last_window_s >= self.config.update_s

    def _take_clip(self, track: LiveTrack) -> list[np.ndarray]:
        """``track``'s next clip's crops, marking it with the model (under the lock)."""
        track.pending, track.last_window_s = True, track.last_seen.stream_s
        return track.clip_frames(self.frames_per_clip)

    def _send(self, track: LiveTrack, clip: object | None, end: bool) -> None:
        """Hands ``clip`` (or, for an ended track without one, nothing) to the event loop."""
        future = asyncio.run_coroutine_threadsafe(self._answer(track, clip, end), self.loop)
        future.add_done_callback(_log_failure)

    # On the event loop -------------------------------------------------------------------------------------------
    async def _answer(self, track: LiveTrack, clip: object | None, end: bool) -> None:
        if clip is not None:
            try:
                result = await self.model.submit(clip, Lane.STREAM)
            except ServiceError as exc:  # queue full or timed out behind requests: the next update tries again
                log.info("stream %s track %d: window not run (%s)", self.id, track.track_id, exc.code.value)
                result = None
            with self._lock:
                if result is not None:
                    track.fuse(result.probabilities, result.embedding, result.image_embedding)
                track.pending = False
                end = end or track.lost
            if result is not None:
                self.series.windows.inc()
        if end:
            self._end(track)
        elif not self._stop.is_set():  # a stopped stream has sent its tracks' ends already
            self._update(track)

    def _update(self, track: LiveTrack) -> None:
        with self._lock:
            if track.end_sent or not track.boxes or track.windows == 0:
                return
            state = track.state(self.id, self.name)
        self.on_event(self, Event("track_update", state))

    def _end(self, track: LiveTrack) -> None:
        """``track_end`` once per track, and the whole track to ``on_track_end``."""
        with self._lock:
            if track.end_sent or not track.boxes:
                return
            track.end_sent = True
            self._closing.pop(track.track_id, None)
            state, ended = track.state(self.id, self.name), track.ended(self.id, self.name)
        self.on_event(self, Event("track_end", state))
        self.on_track_end(ended)


def _bytetrack(lost_s: float):
    from trackers import ByteTrackTracker

    # Fed stream timestamps: ByteTrack keeps a lost track for lost_track_buffer / 30 seconds.
    return ByteTrackTracker(lost_track_buffer=max(1, round(lost_s * 30)))


def _log_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a stream's window failed", exc_info=future.exception())
