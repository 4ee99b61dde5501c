"""The preview picture of a stream: its last processed frame with each person's box, track id and top attributes,
as a JPEG. Drawn only while someone watches (GET /streams/{id}/snapshot or /preview), at most PREVIEW_FPS times a
second per stream however many watch: every viewer gets the same picture."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.decisions import positives

from ..errors import ErrorCode, ServiceError
from .manager import Watched

PREVIEW_FPS = 5.0
MAX_VIEWERS = 4  # MJPEG viewers held open per stream; each costs a connection and a JPEG copy per tick
TOP_ATTRIBUTES = 2
JPEG_QUALITY = 80
BOUNDARY = "frame"
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


@dataclass
class _Latest:
    stream: Watched
    tick: int = -1
    jpeg: bytes | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Previews:
    """Each stream's latest preview JPEG, rendered once per tick (1 / PREVIEW_FPS s) and shared by every viewer,
    and the count of MJPEG viewers per stream (at most MAX_VIEWERS)."""

    def __init__(self) -> None:
        self._latest: dict[str, _Latest] = {}
        self._viewers: Counter[str] = Counter()

    async def picture(
        self, stream_id: str, stream: Watched, names: Sequence[str], thresholds: Sequence[float]
    ) -> bytes | None:
        """``stream``'s picture for this tick (None before its first frame); the pictures of streams that have
        ended are let go."""
        latest = self._latest.get(stream_id)
        if latest is None:
            self._latest = {k: v for k, v in self._latest.items() if not v.stream.ended}
            latest = self._latest[stream_id] = _Latest(stream)
        latest.stream = stream  # on Ray each call brings its own handle to the camera
        tick = math.floor(time.monotonic() * PREVIEW_FPS)
        async with latest.lock:  # viewers arriving together wait for one rendering
            if latest.tick != tick:
                latest.jpeg = await asyncio.to_thread(render, stream, names, thresholds)
                latest.tick = tick
            return latest.jpeg

    def check_room(self, stream_id: str) -> None:
        """429 ``too_many_viewers`` when ``stream_id``'s MJPEG preview has MAX_VIEWERS viewers already."""
        if self._viewers[stream_id] >= MAX_VIEWERS:
            raise ServiceError(
                ErrorCode.TOO_MANY_VIEWERS,
                f"{MAX_VIEWERS} viewers watch this stream's preview already; poll GET /streams/{{id}}/snapshot",
            )

    @contextlib.contextmanager
    def viewer(self, stream_id: str) -> Iterator[None]:
        """Counts one MJPEG viewer of ``stream_id`` while it watches (entered by the answer's own generator, so
        that a viewer who left before the answer started is never counted)."""
        self._viewers[stream_id] += 1
        try:
            yield
        finally:
            self._viewers[stream_id] -= 1
            if not self._viewers[stream_id]:
                del self._viewers[stream_id]


def render(stream: Watched, names: Sequence[str], thresholds: Sequence[float]) -> bytes | None:
    """The JPEG of ``stream``'s last processed frame with its people, or None before the first frame."""
    import cv2

    snapshot = stream.snapshot()
    if snapshot is None:
        return None
    frame, shown, fused = snapshot
    labels = {track_id: _top(fused[track_id], names, thresholds) for track_id, _ in shown}
    picture = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    for track_id, box in shown:
        colour = COLOURS[track_id % len(COLOURS)][::-1]
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(picture, (x0, y0), (x1, y1), colour, 2)
        for line, text in enumerate([f"#{track_id}", *labels[track_id]]):
            origin = (x0 + 2, max(12, y0 + 14 + 14 * line))
            cv2.putText(picture, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(picture, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return jpeg.tobytes() if ok else None


def part(jpeg: bytes) -> bytes:
    """One part of the multipart/x-mixed-replace answer."""
    return f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n"


def _top(probabilities: np.ndarray | None, names: Sequence[str], thresholds: Sequence[float]) -> list[str]:
    """The most probable positive attributes, most probable first."""
    if probabilities is None:
        return []
    positive = positives(probabilities, thresholds)
    order = np.argsort(-probabilities)
    return [names[i] for i in order if positive[i]][:TOP_ATTRIBUTES]
