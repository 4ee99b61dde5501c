"""Reading a tracklet's frames as RGB ``uint8`` arrays: image files with PIL, videos with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from .records import Tracklet


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy warns on read-only arrays


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of the first video stream (tracklets are short clips, so all of them fit in memory)."""
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise RuntimeError(f"cannot decode video {path}: {exc}") from None
    if not frames:
        raise RuntimeError(f"video {path} has no decodable frames")
    return frames


class FrameReader:
    """Random access to one tracklet's frames; a video is decoded once, image files are read on demand."""

    def __init__(self, tracklet: Tracklet):
        self._files = tracklet.frame_files
        self._decoded = decode_video(tracklet.video) if tracklet.video is not None else None

    def __len__(self) -> int:
        return len(self._decoded) if self._decoded is not None else len(self._files)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._decoded is not None:
            return self._decoded[index]
        return read_image(self._files[index])
