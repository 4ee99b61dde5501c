"""The preview picture of a stream: its last processed frame with each person's box, track id and top attributes,
as a JPEG. Drawn only while someone watches (GET /streams/{id}/preview), at most PREVIEW_FPS times a second."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.decisions import positives

from .manager import Watched

PREVIEW_FPS = 5.0
TOP_ATTRIBUTES = 2
JPEG_QUALITY = 80
BOUNDARY = "frame"
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


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
