"""What one upload may cost to decode, and the result of decoding it."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ErrorCode, ServiceError


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    max_side: int
    max_aspect_ratio: float
    max_duration_s: float
    max_frames_decoded: int
    max_upload_frames: int
    min_frames: int
    decode_timeout_s: float
    decode_threads: int
    allowed_codecs: frozenset[str]
    decode_device: str = "cpu"  # "cuda": NVDEC (see video.py)

    @classmethod
    def from_settings(cls, settings) -> DecodeLimits:
        return cls(
            max_pixels=settings.max_pixels,
            max_side=settings.max_side,
            max_aspect_ratio=settings.max_aspect_ratio,
            max_duration_s=settings.max_duration_s,
            max_frames_decoded=settings.max_frames_decoded,
            max_upload_frames=settings.max_upload_frames,
            min_frames=settings.min_frames,
            decode_timeout_s=settings.decode_timeout_s,
            decode_threads=settings.decode_threads,
            allowed_codecs=frozenset(settings.allowed_codecs),
            decode_device=settings.decode_device,
        )

    def without_duration(self) -> DecodeLimits:
        """These limits less the duration one, for work that decodes only the frames it names (/predict/tracks,
        /predict/scene): ``max_frames_decoded`` and the deadline bound its cost, however long the recording.
        /predict keeps ``max_duration_s``: it spreads a clip's frames over the whole video, which makes sense for
        a clip of one person, not for a long recording."""
        return dataclasses.replace(self, max_duration_s=math.inf)

    def check_frame_size(self, width: int, height: int, what: str) -> None:
        """Refuse a frame size from the header, before any pixel is decoded."""
        if width < 1 or height < 1:
            raise ServiceError(ErrorCode.UNDECODABLE_MEDIA, f"{what} declares a {width}x{height} frame size")
        if width * height > self.max_pixels:
            raise ServiceError(
                ErrorCode.TOO_MANY_PIXELS,
                f"{what} is {width}x{height} = {width * height} pixels; the limit is {self.max_pixels}",
            )
        if max(width, height) > self.max_side:
            raise ServiceError(
                ErrorCode.BAD_FRAME_SIZE, f"{what} is {width}x{height}; the longest side may be {self.max_side}"
            )
        if max(width, height) / min(width, height) > self.max_aspect_ratio:
            raise ServiceError(
                ErrorCode.BAD_FRAME_SIZE,
                f"{what} is {width}x{height}; its sides may differ by a factor of {self.max_aspect_ratio:g} at most",
            )

    def check_frame_count(self, count: int, what: str) -> None:
        if count < self.min_frames:
            raise ServiceError(
                ErrorCode.TOO_FEW_FRAMES, f"{what} has {count} frame(s); at least {self.min_frames} needed"
            )


@dataclass
class Deadline:
    """The wall-clock budget of one decode, from the moment it was asked for (time spent waiting for a decode
    worker counts); checked between packets and frames, and after preprocessing. ``abandon`` makes the next
    check stop the work (its request has gone)."""

    seconds: float
    _end: float = field(init=False)
    abandoned: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.seconds

    def abandon(self) -> None:
        self.abandoned = True

    def extend(self, seconds: float) -> None:
        """More time for work known to be long (detection on every k-th frame of a scene)."""
        self._end += seconds
        self.seconds += seconds

    def check(self) -> None:
        if self.abandoned:
            raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the request left while its upload was being decoded")
        if time.monotonic() > self._end:
            raise ServiceError(
                ErrorCode.DECODE_TIMEOUT,
                f"decoding took longer than {self.seconds:g} s (waiting for a decode worker included)",
            )


@dataclass
class DecodedMedia:
    """The frames picked from one upload (RGB uint8 [H, W, 3], in temporal order) and what they came from."""

    frames: list[np.ndarray]
    indices: list[int]  # index of each picked frame among all frames of the upload
    total_frames: int
    source: str  # "video" or "frames"
    container: str  # mp4, matroska, avi, gif, mpegts; jpeg or png for frames uploads
    codec: str
    width: int
    height: int
    duration_s: float | None
    frames_decoded: int  # frames actually decoded (seeking keeps this below total_frames)
