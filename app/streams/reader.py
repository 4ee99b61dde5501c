"""Reading a live source: one thread decodes every frame at the source's pace and hands every k-th, as RGB, to a
slot that holds one frame (``FrameSlot``).

A local file is read at its own frame rate, as a camera would send it, and its end ends the reader. A network
source that fails, goes quiet, or keeps sending other packets (audio) while its video has stopped is reopened
after a capped, jittered backoff (``Backoff``): ``reconnecting``, then ``running`` again with ``reconnects``
counted. One that delivers no frame for ``give_up_s`` ends ``failed`` with its ``last_error``, and so does any
unexpected error: the reader never dies while its state says otherwise.

The reader's fields (``state``, ``last_error``, ``reconnects``, ``frames_dropped``) are written by its thread only
and read by anyone: each is one attribute, replaced whole, so no lock is needed to read them.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

import av
import numpy as np

from ..metrics import StreamSeries
from .sources import Source

log = logging.getLogger(__name__)

StreamState = Literal["connecting", "running", "reconnecting", "stopped", "failed"]
RATE_WINDOW_S = 5.0  # fps_in and fps_processed are measured over this much wall time
# 2**MAX_DOUBLINGS * the first wait is far beyond any retry_max_s; without a cap, 2**attempt overflows a float
# after about 1,024 failed attempts and the exception would end the reader thread.
MAX_DOUBLINGS = 30


class Clock(Protocol):
    """Where a stream's time comes from (injected, so that tests and other hosts can drive it)."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class ReaderConfig:
    detection_interval: int  # every k-th frame goes to the slot
    open_timeout_s: float
    read_timeout_s: float  # a source silent this long, or whose video stops this long, is reopened
    retry_first_s: float
    retry_max_s: float
    give_up_s: float
    decode_threads: int


@dataclass
class Frame:
    """A decoded frame handed from the reader to processing."""

    stream_s: float  # stream time, continued across reconnections
    arrived: float  # Clock.monotonic() when decoded
    at: datetime  # wall clock (UTC) when decoded
    rgb: np.ndarray


class FrameSlot:
    """The latest frame, one at most: putting over an untaken frame replaces it (a drop)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._ready = threading.Condition()

    def put(self, frame: Frame) -> bool:
        """True when a frame waiting there was dropped for this one."""
        with self._ready:
            dropped = self._frame is not None
            self._frame = frame
            self._ready.notify()
            return dropped

    def take(self, timeout: float) -> Frame | None:
        with self._ready:
            if self._frame is None:
                self._ready.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class Rate:
    """Events per second over the last RATE_WINDOW_S."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=1024)
        self._lock = threading.Lock()  # ticked by one thread, read by the status on another

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)

    def per_second(self, now: float) -> float:
        with self._lock:
            while self._times and now - self._times[0] > RATE_WINDOW_S:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(now - self._times[0], 1e-6)


@dataclass
class Backoff:
    """The reconnect state: waits of ``first_s`` doubling up to ``max_s``, each jittered to 50-100 % so that cameras
    behind one switch do not retry in step, until no frame has come for ``give_up_s``."""

    first_s: float
    max_s: float
    give_up_s: float
    last_frame: float  # Clock.monotonic() of the last frame
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def frame_arrived(self, now: float) -> None:
        self.attempt, self.last_frame = 0, now

    def next_wait(self, now: float) -> float | None:
        """Seconds to wait before the next attempt, or None: give up."""
        if now - self.last_frame > self.give_up_s:
            return None
        wait = min(self.max_s, self.first_s * 2.0 ** min(self.attempt, MAX_DOUBLINGS))
        self.attempt += 1
        return wait * self.rng.uniform(0.5, 1.0)


class VideoStalled(Exception):
    """The source sends packets, but no video frame came for read_timeout_s (a frozen camera whose audio runs on)."""


class BrokenRecording(Exception):
    """A local file that cannot be read: waiting does not mend it."""


Opener = Callable[..., "av.container.InputContainer"]


class Reader:
    """Reads ``source`` on its own thread (``run``) into ``slot``, until ``stop`` is set or it gives up; then
    ``on_end`` is called (on the reader's thread) unless it was stopped."""

    def __init__(
        self,
        source: Source,
        config: ReaderConfig,
        slot: FrameSlot,
        stop: threading.Event,
        series: StreamSeries,
        on_end: Callable[[], None],
        clock: Clock,
        opener: Opener = av.open,
    ) -> None:
        self.source, self.config, self.slot, self.series = source, config, slot, series
        self._stop, self._on_end, self._clock, self._open = stop, on_end, clock, opener
        self.state: StreamState = "connecting"
        self.last_error: str | None = None
        self.reconnects = self.frames_dropped = 0
        self.rate_in = Rate()
        self.backoff = Backoff(config.retry_first_s, config.retry_max_s, config.give_up_s, clock.monotonic())
        self._stream_clock: tuple[float, float] | None = None  # (stream time, monotonic) of the last frame read
        self._ever_ran = False

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must end the stream visibly, never leave it "reconnecting" forever
            trace = "".join(traceback.format_exception(exc))  # redacted: FFmpeg's messages name the URL
            log.error("stream reader of %s failed: %s", self.source.shown, self.source.redact(trace))
            self._finish("failed", f"unexpected error: {self.source.redact(f'{type(exc).__name__}: {exc}')}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in self._frames():
                    pass
                if self._stop.is_set():
                    return
                if self.source.is_file:  # its end; without a single frame, a broken recording
                    if self._ever_ran:
                        return self._finish("stopped", None)
                    raise BrokenRecording("the recording has no frame that can be decoded")
                self.last_error = "the source ended the stream"
            except BrokenRecording as exc:
                return self._finish("failed", str(exc))
            except (av.FFmpegError, OSError, ValueError, IndexError, VideoStalled) as exc:  # IndexError: no video
                if self.source.is_file:  # a broken recording does not mend by waiting
                    return self._finish("failed", self.source.redact(f"{type(exc).__name__}: {exc}"))
                self.last_error = self.source.redact(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                return
            wait = self.backoff.next_wait(self._clock.monotonic())
            if wait is None:
                return self._finish("failed", self.last_error)
            self.state = "reconnecting" if self._ever_ran else "connecting"
            log.info("stream %s: %s; retrying in %.1f s", self.source.shown, self.last_error, wait)
            self._stop.wait(wait)

    def _finish(self, state: StreamState, error: str | None) -> None:
        self.state, self.last_error = state, error
        if state == "failed":
            log.warning("stream %s failed: %s", self.source.shown, error)
        if not self._stop.is_set():
            self._on_end()

    def _frames(self) -> Iterator[Frame]:
        """Decoded frames, at the source's pace; every k-th goes to the slot."""
        config, clock = self.config, self._clock
        timeout = (config.open_timeout_s, config.read_timeout_s)
        with self._open(self.source.target, options=dict(self.source.options), timeout=timeout) as container:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            video.codec_context.thread_count = config.decode_threads
            # Stream time runs on across reconnections (a source restarts its timestamps): this connection's
            # first frame comes after the last one by the time spent reconnecting.
            last = self._stream_clock
            resume_s = 0.0 if last is None else last[0] + clock.monotonic() - last[1]
            first: tuple[float, float] | None = None  # (source time, monotonic) of this connection's first frame
            index, last_video = 0, clock.monotonic()
            # Every stream's packets: the socket's read timeout sees only silence, so a video that stops while
            # the audio runs on is caught here, on the gap between video frames.
            for packet in container.demux():
                if self._stop.is_set():
                    return
                if packet.stream.index != video.index:
                    if not self.source.is_file and clock.monotonic() - last_video > config.read_timeout_s:
                        raise VideoStalled(f"no video frame for {config.read_timeout_s:g} s while other packets came")
                    continue
                for decoded in video.decode(packet):
                    raw_s = float(decoded.time) if decoded.time is not None else index / float(video.average_rate or 25)
                    first = first or (raw_s, clock.monotonic())
                    floor = self._stream_clock[0] if self._stream_clock else 0.0
                    stream_s = max(resume_s + raw_s - first[0], floor)
                    if self.source.is_file:  # a recording plays at its own frame rate, as a camera sends it
                        self._stop.wait(max(0.0, first[1] + raw_s - first[0] - clock.monotonic()))
                    now = last_video = clock.monotonic()
                    self._stream_clock = (stream_s, now)
                    self._arrived(now)
                    frame = Frame(stream_s, now, clock.now(), np.empty(0))
                    if index % config.detection_interval == 0:
                        frame.rgb = decoded.to_ndarray(format="rgb24")
                        if self.slot.put(frame):
                            self.frames_dropped += 1
                            self.series.frames_dropped.inc()
                    index += 1
                    yield frame
                    if self._stop.is_set():
                        return

    def _arrived(self, now: float) -> None:
        if self.state != "running":
            if self._ever_ran:
                self.reconnects += 1
                self.series.reconnects.inc()
            self.state, self._ever_ran = "running", True
        self.backoff.frame_arrived(now)
        self.rate_in.tick(now)
        self.series.frames_in.inc()
