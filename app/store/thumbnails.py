"""Thumbnails: choosing a track's best box, cutting it, and keeping it as a JPEG file.

Files under ``<data_dir>/thumbnails``, not BLOBs in the database: rows stay small (the search scans rows, and a
database's cache is better spent on them than on images), the database's backups and purges do not copy pictures,
and a thumbnail is served straight from disk. Instances that share a PostgreSQL store share that folder too (one
volume).

A file is written under a temporary name, flushed to disk and renamed, so that no half-written picture ever has a
real name. A crash between the files and the rows' commit (or between deleting rows and unlinking their files)
leaves pictures no row names: :meth:`ThumbnailFiles.sweep` removes those after a grace period.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 256  # longest side of a thumbnail, in pixels
JPEG_QUALITY = 85
PARTIAL = ".partial"  # the suffix of a file still being written
SWEEP_BATCH = 500  # names checked against the database per query


def visible_score(box: Sequence[float], width: int, height: int) -> float:
    """How good a box (x0, y0, x1, y1) is as a thumbnail: its area inside the frame times the fraction of it that
    is inside, so that a large box wins unless the frame's edge cuts much of the person off."""
    x0, y0, x1, y1 = box
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    inside = max(0.0, min(x1, width) - max(x0, 0)) * max(0.0, min(y1, height) - max(y0, 0))
    return inside * inside / area if area > 0 else 0.0


def best_box(boxes: Sequence[Sequence[float]], width: int, height: int) -> int:
    """The index of the best box (x0, y0, x1, y1) of a track; the earliest among equals."""
    scores = [visible_score(box, width, height) for box in boxes]
    return scores.index(max(scores))


def cut(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The box (x0, y0, x1, y1), clipped to the frame, shrunk so that its longest side is at most MAX_SIDE."""
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, max(x0 + 1, round(box[2]))), min(height, max(y0 + 1, round(box[3])))
    return shrink(frame[y0:y1, x0:x1])


def shrink(crop: np.ndarray) -> np.ndarray:
    longest = max(crop.shape[:2])
    if longest <= MAX_SIDE:
        return np.ascontiguousarray(crop)
    image = Image.fromarray(crop)
    scale = MAX_SIDE / longest
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


class ThumbnailFiles:
    """JPEG files named by random ids, spread over 256 sub-folders so that no folder grows huge."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, crop: np.ndarray) -> str:
        name = f"{uuid.uuid4().hex}.jpg"
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(shrink(crop)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        partial = path.with_name(name + PARTIAL)
        try:
            with partial.open("wb") as file:
                file.write(buffer.getvalue())
                file.flush()
                os.fsync(file.fileno())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return name

    def path(self, name: str) -> Path:
        return self.folder / name[:2] / name

    def read(self, name: str) -> bytes | None:
        """The picture, or None when it is gone (erased or swept since its row was read)."""
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, names: Iterable[str | None]) -> None:
        for name in names:
            if name is not None:
                self.path(name).unlink(missing_ok=True)

    def sweep(self, named: Callable[[list[str]], set[str]], grace_s: float) -> int:
        """Deletes the pictures older than ``grace_s`` that no row names (``named`` says which of a list of names
        rows still hold), and partial files as old; returns how many files went."""
        cutoff = time.time() - grace_s
        removed = 0
        for folder in sorted(self.folder.glob("??")):
            old = [path for path in folder.iterdir() if _older(path, cutoff)]
            pictures = [path.name for path in old if path.suffix == ".jpg"]
            kept: set[str] = set()
            for start in range(0, len(pictures), SWEEP_BATCH):
                kept |= named(pictures[start : start + SWEEP_BATCH])
            for path in old:
                if path.name not in kept:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:  # erased meanwhile
        return False


class BestCrops:
    """Each track's thumbnail, cut in the decode pass that cuts its crops: ``wanted`` says which frames it needs
    (frame -> a function of the whole RGB frame), ``crops`` holds a thumbnail per track once they are decoded."""

    def __init__(self, tracks: Sequence[Sequence], width: int, height: int) -> None:
        """``tracks``: each track's boxes (objects with ``frame``, ``left``, ``top``, ``width``, ``height``)."""
        self.crops: list[np.ndarray | None] = [None] * len(tracks)
        chosen: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {}
        for track, boxes in enumerate(tracks):
            corners = [(b.left, b.top, b.left + b.width, b.top + b.height) for b in boxes]
            best = best_box(corners, width, height)
            chosen.setdefault(boxes[best].frame, []).append((track, corners[best]))
        self.wanted = {frame: self._cutter(picks) for frame, picks in chosen.items()}

    def _cutter(self, picks: list[tuple[int, tuple[float, float, float, float]]]):
        def keep(frame: np.ndarray) -> None:
            for track, box in picks:
                self.crops[track] = cut(frame, box)

        return keep
