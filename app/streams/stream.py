"""One live stream: a reader thread at the source's pace, a processing thread behind a one-frame slot, and the
events it sends.

The reader decodes every frame (H.264 needs them all) and hands every k-th, as RGB, to a slot that holds one frame:
when processing is slower than the source, the frame waiting there is replaced and counted as dropped, so memory
and lag stay bounded instead of a queue growing. A local file is read at its own frame rate, as a camera would
send it, and its end stops the stream. A network source that fails or goes quiet is reopened after a capped,
jittered backoff (``reconnecting``, then ``running`` again with ``reconnects`` counted); one that delivers nothing
for ``VTFPAR_STREAM_GIVE_UP_S`` ends ``failed`` with its ``last_error``.

The processing thread detects, tracks (ByteTrack), cuts and fits each track's crops, and every ``update_s`` of
stream time sends T crops of a track through the model's batcher as a background clip; the answers are fused on
the event loop (``LiveTrack.fuse``) and sent as ``track_update``; a track unseen for ``VTFPAR_STREAM_TRACK_LOST_S``
gets one last window if it has none and is sent as ``track_end``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import av
import numpy as np

from ..backend import ModelBackend
from ..errors import ServiceError
from ..metrics import Metrics
from ..tracks import Detector
from .sources import Source
from .tracks import LiveTrack, Seen, TrackEnded, model_squares

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5  # the first reconnection wait; it doubles up to stream_retry_max_s
RATE_WINDOW_S = 5.0  # fps_in and fps_processed are measured over this much wall time
TAKE_TIMEOUT_S = 0.2  # how often an idle processing thread looks at its stop flag
RING_CLIPS = 2  # a track's crop ring holds this many clips' worth of crops


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


@dataclass
class Event:
    kind: str  # track_update or track_end
    track: TrackEnded  # the track as it stands (an ended track's final state for track_end)
    box: tuple[float, float, float, float]  # the last box, x0, y0, x1, y1


@dataclass
class _Frame:
    stream_s: float
    arrived: float  # time.monotonic() when decoded
    at: datetime
    rgb: np.ndarray


class _Slot:
    """The latest frame, one at most: putting over an untaken frame replaces it (a drop)."""

    def __init__(self) -> None:
        self._frame: _Frame | None = None
        self._ready = threading.Condition()

    def put(self, frame: _Frame) -> bool:
        """True when a frame waiting there was dropped for this one."""
        with self._ready:
            dropped = self._frame is not None
            self._frame = frame
            self._ready.notify()
            return dropped

    def take(self, timeout: float) -> _Frame | None:
        with self._ready:
            if self._frame is None:
                self._ready.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class _Rate:
    """Events per second over the last RATE_WINDOW_S."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=1024)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def per_second(self, now: float) -> float:
        while self._times and now - self._times[0] > RATE_WINDOW_S:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], 1e-6)


class Stream:
    def __init__(
        self,
        stream_id: str,
        name: str,
        source: Source,
        config: StreamConfig,
        detector: Detector,
        backend: ModelBackend,
        metrics: Metrics,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[Stream, Event], None],
        on_finished: Callable[[Stream], None],
    ) -> None:
        self.id, self.name, self.source, self.config = stream_id, name, source, config
        self.detector, self.backend, self.metrics, self.loop = detector, backend, metrics, loop
        self.on_event = on_event  # called on the event loop
        self.on_finished = on_finished  # called on the event loop when the source ends or fails
        self.ended = False  # stop() has sent the open tracks' ends
        description = backend.description
        self.frames_per_clip = description.frames_per_clip
        self._square = model_squares(description.preprocess)  # crops become model input as they are cut
        self.state = "connecting"
        self.last_error: str | None = None
        self.reconnects = self.frames_dropped = 0
        self.lag_s = 0.0
        self.created_at = datetime.now(UTC)
        self._rate_in, self._rate_processed = _Rate(), _Rate()
        self._slot = _Slot()
        self._clock: tuple[float, float] | None = None  # (stream time, monotonic) of the last frame read
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards tracks, latest
        self.tracks: dict[int, LiveTrack] = {}
        self.latest: tuple[np.ndarray, list[tuple[int, np.ndarray]]] | None = None  # the last frame and its boxes
        self._tracker = _bytetrack(config.track_lost_s)
        self._reader = threading.Thread(target=self._read, name=f"stream-{stream_id}-reader", daemon=True)
        self._processor = threading.Thread(target=self._process, name=f"stream-{stream_id}-process", daemon=True)
        self._label = metrics.streams.labels(stream_id)

    # Status ------------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        now = time.monotonic()
        return {
            "id": self.id,
            "name": self.name,
            "url": self.source.url,
            "state": self.state,
            "fps_in": round(self._rate_in.per_second(now), 2),
            "fps_processed": round(self._rate_processed.per_second(now), 2),
            "frames_dropped": self.frames_dropped,
            "lag_s": round(self.lag_s, 3),
            "active_tracks": len(self.tracks),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "detection_interval": self.config.detection_interval,
            "update_s": self.config.update_s,
            "created_at": self.created_at.isoformat(),
        }

    def snapshot(self) -> tuple[np.ndarray, list[tuple[int, np.ndarray]], dict[int, np.ndarray | None]] | None:
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

    @property
    def finished(self) -> bool:
        return self.state in ("stopped", "failed")

    # Lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._reader.start()
        self._processor.start()

    async def stop(self) -> None:
        """Stop reading and processing, and end every open track (``track_end``, no last window: the model may be
        shutting down too). Returns once the processing thread is done; the reader follows within a read timeout."""
        self._stop.set()
        await asyncio.to_thread(self._processor.join)
        if not self.finished:
            self.state = "stopped"
        with self._lock:
            tracks, self.tracks = list(self.tracks.values()), {}
        for track in tracks:
            self._emit("track_end", track)
        self.ended = True

    # Reader thread -----------------------------------------------------------------------------------------------
    def _read(self) -> None:
        attempt, last_frame = 0, time.monotonic()
        ever_ran = False
        while not self._stop.is_set():
            try:
                for frame in self._frames():
                    if self.state != "running":
                        if ever_ran:
                            self.reconnects += 1
                            self._label.reconnects.inc()
                        self.state, ever_ran, attempt = "running", True, 0
                    last_frame = frame.arrived
                if self._stop.is_set():
                    return
                if self.source.is_file:  # its end; without a single frame, a broken recording
                    self.state = "stopped" if ever_ran else "failed"
                    self.last_error = None if ever_ran else "the recording has no frame that can be decoded"
                    self.loop.call_soon_threadsafe(self.on_finished, self)
                    return
                self.last_error = "the source ended the stream"
            except (av.FFmpegError, OSError, ValueError, IndexError) as exc:  # IndexError: no video
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.source.is_file:  # a broken recording does not mend by waiting
                    last_frame = -math.inf
            if self._stop.is_set():
                return
            if time.monotonic() - last_frame > self.config.give_up_s:
                log.warning("stream %s failed: %s", self.id, self.last_error)
                self.state = "failed"
                self.loop.call_soon_threadsafe(self.on_finished, self)
                return
            self.state = "reconnecting" if ever_ran else "connecting"
            delay = min(self.config.retry_max_s, RETRY_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)
            log.info("stream %s: %s; retrying in %.1f s", self.id, self.last_error, delay)
            attempt += 1
            self._stop.wait(delay)

    def _frames(self):
        """Decoded frames, at the source's pace; every k-th goes to the slot."""
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        with av.open(self.source.target, options=dict(self.source.options), timeout=timeout) as container:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            video.codec_context.thread_count = self.config.decode_threads
            # Stream time runs on across reconnections (a source restarts its timestamps): this connection's
            # first frame comes after the last one by the time spent reconnecting.
            resume_s = 0.0 if self._clock is None else self._clock[0] + time.monotonic() - self._clock[1]
            first: tuple[float, float] | None = None  # (source time, monotonic) of this connection's first frame
            for index, decoded in enumerate(container.decode(video)):
                if self._stop.is_set():
                    return
                raw_s = float(decoded.time) if decoded.time is not None else index / float(video.average_rate or 25)
                first = first or (raw_s, time.monotonic())
                stream_s = max(resume_s + raw_s - first[0], self._clock[0] if self._clock else 0.0)
                if self.source.is_file:  # a recording plays at its own frame rate, as a camera sends it
                    self._stop.wait(max(0.0, first[1] + raw_s - first[0] - time.monotonic()))
                now = time.monotonic()
                self._clock = (stream_s, now)
                self._rate_in.tick(now)
                self._label.frames_in.inc()
                frame = _Frame(stream_s, now, datetime.now(UTC), np.empty(0))
                if index % self.config.detection_interval == 0:
                    frame.rgb = decoded.to_ndarray(format="rgb24")
                    if self._slot.put(frame):
                        self.frames_dropped += 1
                        self._label.frames_dropped.inc()
                yield frame

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
            now = time.monotonic()
            self.lag_s = now - frame.arrived
            self._label.lag.set(self.lag_s)
            self._rate_processed.tick(now)

    def _process_frame(self, frame: _Frame) -> None:
        import supervision as sv

        [(boxes, scores)] = self.detector.detect([frame.rgb])
        self._label.detections.inc(len(scores))
        detections = sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=np.asarray(scores, np.float32)
        )
        tracked = self._tracker.update(detections, timestamp=frame.stream_s)
        seen = Seen(frame.stream_s, frame.at)
        assert tracked.tracker_id is not None
        shown: list[tuple[int, np.ndarray]] = []
        due: list[LiveTrack] = []
        with self._lock:
            for box, raw_id in zip(tracked.xyxy, tracked.tracker_id, strict=True):
                if raw_id < 0:
                    continue  # not (yet) a confirmed track
                track_id = int(raw_id) + 1
                track = self.tracks.get(track_id)
                if track is None:
                    if len(self.tracks) >= self.config.max_tracks:
                        continue
                    track = self.tracks[track_id] = LiveTrack(track_id, seen, RING_CLIPS * self.frames_per_clip)
                track.add(seen, box, frame.rgb, self._square)
                shown.append((track_id, box))
                if self._window_due(track, frame.stream_s):
                    due.append(track)
            lost = [t for t in self.tracks.values() if frame.stream_s - t.last_seen.stream_s > self.config.track_lost_s]
            for track in lost:
                del self.tracks[track.track_id]
            self.latest = (frame.rgb, shown)
            self._label.active_tracks.set(len(self.tracks))
            clips = [(track, track.clip_frames(self.frames_per_clip)) for track in due]
            # An ended track gets one last window if none ran yet (a short visit still gets its attributes).
            finals = [(t, t.clip_frames(self.frames_per_clip) if t.windows == 0 and t.crops else []) for t in lost]
        for track, crops in clips:
            self._send(track, self.backend.prepare(crops), end=False)
        for track, crops in finals:
            self._send(track, self.backend.prepare(crops) if crops else None, end=True)

    def _window_due(self, track: LiveTrack, stream_s: float) -> bool:
        if track.pending or not track.crops:
            return False
        # The first window waits for a full clip of crops; later ones come every update_s.
        if track.last_window_s is None:
            return len(track.crops) >= self.frames_per_clip
        return stream_s - track.last_window_s >= self.config.update_s

    def _send(self, track: LiveTrack, clip: object | None, end: bool) -> None:
        """Hands ``clip`` (or, for an ended track without one, nothing) to the event loop."""
        if clip is not None:
            track.pending, track.last_window_s = True, track.last_seen.stream_s
        coroutine = self._answer(track, clip, end)
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.add_done_callback(_log_failure)

    async def _answer(self, track: LiveTrack, clip: object | None, end: bool) -> None:
        if clip is not None:
            try:
                result = await self.backend.submit(clip, background=True)
            except ServiceError as exc:  # queue full or timed out behind requests: the next update tries again
                log.info("stream %s track %d: window not run (%s)", self.id, track.track_id, exc.code.value)
            else:
                with self._lock:
                    track.fuse(result.probabilities, result.embedding)
                self._label.windows.inc()
            finally:
                track.pending = False
        if end or not self._stop.is_set():  # a stopped stream has sent its tracks' ends already
            self._emit("track_end" if end else "track_update", track)

    def _emit(self, kind: str, track: LiveTrack) -> None:
        with self._lock:
            ended = track.ended(self.id, self.name)
        if not ended.boxes or (kind == "track_update" and not ended.probabilities):
            return
        self.on_event(self, Event(kind, ended, ended.boxes[-1][1:]))


def _bytetrack(lost_s: float):
    from trackers import ByteTrackTracker

    # Fed stream timestamps: ByteTrack keeps a lost track for lost_track_buffer / 30 seconds.
    return ByteTrackTracker(lost_track_buffer=max(1, round(lost_s * 30)))


def _log_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a stream's window failed", exc_info=future.exception())
