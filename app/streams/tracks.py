"""One person followed on a live stream: bounded rings of boxes and prepared crops, the best thumbnail so far, and
the attributes fused over its windows.

Fusion is the mean of the windows' logits (``logit(p)`` of each window's calibrated probabilities), turned back into
probabilities: every window counts the same, so labels settle as windows accumulate instead of following the
latest one, and a single bad window (a person half hidden) moves the answer by 1/n of its logit.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch

from model import Preprocess, sample_frame_indices

MAX_BOXES = 512  # boxes a track remembers (stream time and corners), for events and the track store
THUMBNAIL_SIDE = 256  # longest side of the thumbnail kept per track
EDGE_PX = 2  # a box this close to the frame's edge is cut by it
PROBABILITY_FLOOR = 1e-6  # keeps logit() finite


@dataclass(frozen=True)
class Seen:
    stream_s: float  # stream time: the frame's timestamp
    at: datetime  # wall clock (UTC) when the frame arrived


@dataclass
class TrackEnded:
    """What listeners of ended tracks get (``StreamManager.add_track_end_listener``)."""

    stream_id: str
    stream_name: str
    track_id: int
    first_seen_s: float
    last_seen_s: float
    first_seen_at: datetime
    last_seen_at: datetime
    boxes: list[tuple[float, float, float, float, float]]  # (stream_time_s, x0, y0, x1, y1), the last MAX_BOXES
    windows: int
    probabilities: list[float]  # the fused answer, in the schema's column order; empty when no window ran
    thumbnail: np.ndarray | None  # RGB uint8, the track's best box at full resolution, longest side <= 256 px
    embedding: np.ndarray | None = None  # the windows' fused appearance embedding (unit length), if the model gives one
    image_embedding: np.ndarray | None = None  # the windows' fused CLIP image embedding, with clip_image_embedding


@dataclass(frozen=True)
class TrackState:
    """What an event says about a track: small and of fixed size (an event is buffered per reader), so it carries
    the last box only; the whole track goes to the listeners of ended tracks as a ``TrackEnded``."""

    stream_id: str
    stream_name: str
    track_id: int
    first_seen: Seen
    last_seen: Seen
    box: tuple[float, float, float, float]  # the last box: x0, y0, x1, y1 pixels
    windows: int
    probabilities: tuple[float, ...]  # the fused answer, in the schema's column order; empty when no window ran


@dataclass(frozen=True)
class Cut:
    """One box's crop, prepared as the model's input picture, and the thumbnail it would make (None when it is not
    better than the track's): computed without the stream's lock, recorded under it."""

    square: np.ndarray | None  # None: the box is too small to cut
    thumbnail: np.ndarray | None
    rank: tuple[bool, float]


def cut(
    frame: np.ndarray,
    box: np.ndarray,
    square: Callable[[np.ndarray], np.ndarray],
    best: tuple[bool, float] = (False, -1.0),
) -> Cut:
    """``box``'s crop of ``frame`` (RGB uint8) as the model's input picture (``square``, from
    :func:`model_squares`) and, when it ranks above ``best`` (whole boxes first, then larger), its thumbnail."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = max(0, int(x0)), max(0, int(y0))
    right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if right - left < 2 or bottom - top < 2:
        return Cut(None, None, best)
    crop = frame[top:bottom, left:right]
    whole = x0 > EDGE_PX and y0 > EDGE_PX and x1 < width - EDGE_PX and y1 < height - EDGE_PX
    rank = (whole, float((right - left) * (bottom - top)))
    thumbnail = _fit(crop, THUMBNAIL_SIDE) if rank > best else None
    return Cut(square(crop), thumbnail, rank)


class LiveTrack:
    """Changed by the stream's processing thread (boxes, crops, window bookkeeping) and the event loop (fusion, its
    end): the stream's lock guards every field."""

    def __init__(self, track_id: int, seen: Seen, ring: int) -> None:
        self.track_id = track_id
        self.first_seen = self.last_seen = seen
        self.boxes: collections.deque[tuple[float, float, float, float, float]] = collections.deque(maxlen=MAX_BOXES)
        self.crops: collections.deque[np.ndarray] = collections.deque(maxlen=ring)
        self.thumbnail: np.ndarray | None = None
        self.thumbnail_rank: tuple[bool, float] = (False, -1.0)
        self.windows = 0
        self._logit_sum: np.ndarray | None = None
        self._embedding_sum: np.ndarray | None = None
        self._image_sum: np.ndarray | None = None
        self.last_window_s: float | None = None  # stream time of the last clip sent
        self.pending = False  # a clip is with the model
        self.lost = False  # the tracker lost it while a clip was with the model: that answer ends it
        self.end_sent = False  # its track_end went out: no event follows

    def record(self, seen: Seen, box: np.ndarray, cut: Cut) -> None:
        """Record a box of this track and its :func:`cut`."""
        x0, y0, x1, y1 = (float(v) for v in box)
        self.last_seen = seen
        self.boxes.append((seen.stream_s, x0, y0, x1, y1))
        if cut.square is not None:
            self.crops.append(cut.square)
        if cut.thumbnail is not None and cut.rank > self.thumbnail_rank:
            self.thumbnail_rank, self.thumbnail = cut.rank, cut.thumbnail

    def clip_frames(self, frames_per_clip: int) -> list[np.ndarray]:
        """``frames_per_clip`` crops spread over the ring, as /predict samples a clip's frames."""
        crops = list(self.crops)
        return [crops[i] for i in sample_frame_indices(len(crops), frames_per_clip, "segment_middle")]

    def fuse(
        self, probabilities: np.ndarray, embedding: np.ndarray | None = None, image_embedding: np.ndarray | None = None
    ) -> None:
        clipped = np.clip(probabilities.astype(np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        logits = np.log(clipped) - np.log1p(-clipped)
        self._logit_sum = logits if self._logit_sum is None else self._logit_sum + logits
        if embedding is not None:  # every window counts the same here too: the mean direction of the windows'
            vector = embedding.astype(np.float64)
            self._embedding_sum = vector if self._embedding_sum is None else self._embedding_sum + vector
        if image_embedding is not None:  # the same mean direction for CLIP's image embedding
            image = image_embedding.astype(np.float64)
            self._image_sum = image if self._image_sum is None else self._image_sum + image
        self.windows += 1

    @property
    def embedding(self) -> np.ndarray | None:
        if self._embedding_sum is None:
            return None
        norm = np.linalg.norm(self._embedding_sum)
        return (self._embedding_sum / norm).astype(np.float32) if norm > 0 else None

    @property
    def image_embedding(self) -> np.ndarray | None:
        if self._image_sum is None:
            return None
        norm = np.linalg.norm(self._image_sum)
        return (self._image_sum / norm).astype(np.float32) if norm > 0 else None

    @property
    def probabilities(self) -> np.ndarray | None:
        if self._logit_sum is None:
            return None
        return (1 / (1 + np.exp(-self._logit_sum / self.windows))).astype(np.float32)

    def state(self, stream_id: str, stream_name: str) -> TrackState:
        probabilities = self.probabilities
        _, *box = self.boxes[-1]
        return TrackState(
            stream_id=stream_id,
            stream_name=stream_name,
            track_id=self.track_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            box=(box[0], box[1], box[2], box[3]),
            windows=self.windows,
            probabilities=() if probabilities is None else tuple(probabilities.tolist()),
        )

    def ended(self, stream_id: str, stream_name: str) -> TrackEnded:
        probabilities = self.probabilities
        return TrackEnded(
            stream_id=stream_id,
            stream_name=stream_name,
            track_id=self.track_id,
            first_seen_s=self.first_seen.stream_s,
            last_seen_s=self.last_seen.stream_s,
            first_seen_at=self.first_seen.at,
            last_seen_at=self.last_seen.at,
            boxes=list(self.boxes),
            windows=self.windows,
            probabilities=[] if probabilities is None else probabilities.tolist(),
            thumbnail=self.thumbnail,
            embedding=self.embedding,
            image_embedding=self.image_embedding,
        )


def model_squares(preprocess: Preprocess) -> Callable[[np.ndarray], np.ndarray]:
    """A crop -> the model's S x S input picture in uint8, by the model's own padding and resizing
    (``Preprocess.squares``): preparing it again changes nothing, and a ring holds S*S*3 bytes a crop, whatever
    the camera's resolution."""

    def square(crop: np.ndarray) -> np.ndarray:
        picture = preprocess.squares([np.ascontiguousarray(crop)])[0]  # [3, S, S] in [0, 1], from uint8 steps
        return picture.mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    return square


def _fit(crop: np.ndarray, side: int) -> np.ndarray:
    """``crop`` shrunk so that its longest side is at most ``side`` (never enlarged), as its own contiguous copy so
    that the frame can be freed."""
    import cv2  # the scene extra's OpenCV: imported where streams run, so that the API loads without it

    height, width = crop.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return crop.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
