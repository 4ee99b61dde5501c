"""What one upload may cost to decode, and the result of decoding it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ErrorCode, ServiceError


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    max_duration_s: float
    max_frames_decoded: int
    max_upload_frames: int
    min_frames: int
    timeout_s: float
    threads: int

    @classmethod
    def from_settings(cls, settings) -> DecodeLimits:
        return cls(
            max_pixels=settings.max_pixels,
            max_duration_s=settings.max_duration_s,
            max_frames_decoded=settings.max_frames_decoded,
            max_upload_frames=settings.max_upload_frames,
            min_frames=settings.min_frames,
            timeout_s=settings.decode_timeout_s,
            threads=settings.decode_threads,
        )

    def check_pixels(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_pixels:
            raise ServiceError(
                ErrorCode.TOO_MANY_PIXELS,
                f"{what} is {width}x{height} = {width * height} pixels; the limit is {self.max_pixels}",
            )

    def check_frame_count(self, count: int, what: str) -> None:
        if count < self.min_frames:
            raise ServiceError(
                ErrorCode.TOO_FEW_FRAMES, f"{what} has {count} frame(s); at least {self.min_frames} needed"
            )


@dataclass
class Deadline:
    """The wall-clock budget of one decode; checked between packets and frames."""

    seconds: float
    _end: float = field(init=False)

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise ServiceError(ErrorCode.DECODE_TIMEOUT, f"decoding took longer than {self.seconds:g} s")


@dataclass
class DecodedMedia:
    """The frames picked from one upload (RGB uint8 [H, W, 3], in temporal order) and what they came from."""

    frames: list[np.ndarray]
    indices: list[int]  # index of each picked frame among all frames of the upload
    total_frames: int
    source: str  # "video" or "frames"
    container: str  # mp4, matroska, avi, gif; jpeg or png for frames uploads
    codec: str
    width: int
    height: int
    duration_s: float | None
    frames_decoded: int  # frames actually decoded (seeking keeps this below total_frames)
