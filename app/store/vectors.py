"""One model's appearance embeddings in memory, searched exactly (a matrix product over the rows the filters keep).

Exact search, not an approximate index: it needs nothing beyond numpy, returns the true nearest tracks (recall 1),
filters by camera and time before ranking (an approximate graph filters after, and loses results under narrow
filters), and measured 16 ms p50 for 100 k 240-wide embeddings on 2 shared cores; 1 M unfiltered takes ~130 ms
(benchmarks/similar.py, docs/search.md#appearance-search), which is where an approximate index would pay.

The arrays are saved as one ``.npz`` file (``save``/``load``): no pickle, so a file in the data dir cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

EPOCH = datetime(1970, 1, 1)
MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """A naive UTC time as microseconds since 1970 (how the arrays hold times)."""
    return (moment - EPOCH) // MICROSECOND


@dataclass(frozen=True)
class Filters:
    camera: str | None = None
    since: datetime | None = None  # naive UTC: tracks last seen at or after it
    until: datetime | None = None  # naive UTC: tracks first seen at or before it
    exclude: int | None = None  # a track id left out (the one searched from)
    after: tuple[float, int] | None = None  # keyset: only (score, id) below this, in ranking order


class VectorIndex:
    """Ids, unit vectors, cameras and first/last seen times of one model's tracks, appended and removed in place."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.ids = np.empty(0, np.int64)
        self.vectors = np.empty((0, width), np.float32)
        self.cameras = np.empty(0, np.int32)  # codes into camera_names
        self.first = np.empty(0, np.int64)
        self.last = np.empty(0, np.int64)
        self.camera_names: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _code(self, camera: str) -> int:
        if camera not in self._codes:
            self._codes[camera] = len(self.camera_names)
            self.camera_names.append(camera)
        return self._codes[camera]

    def add(
        self, ids: list[int], vectors: np.ndarray, cameras: list[str], first: list[datetime], last: list[datetime]
    ) -> None:
        if vectors.shape[1:] != (self.width,):
            raise ValueError(f"embeddings of width {vectors.shape[1:]} for an index of width {self.width}")
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors.astype(np.float32)])
        self.cameras = np.concatenate([self.cameras, np.asarray([self._code(c) for c in cameras], np.int32)])
        self.first = np.concatenate([self.first, np.asarray([micros(t) for t in first], np.int64)])
        self.last = np.concatenate([self.last, np.asarray([micros(t) for t in last], np.int64)])

    def remove(self, ids: list[int]) -> int:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self.ids, self.vectors, self.cameras = self.ids[keep], self.vectors[keep], self.cameras[keep]
            self.first, self.last = self.first[keep], self.last[keep]
        return removed

    def vector(self, track: int) -> np.ndarray | None:
        found = np.flatnonzero(self.ids == track)
        return self.vectors[found[0]] if len(found) else None

    def search(self, query: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """The ``limit`` most similar tracks (cosine similarity, then the highest id) within the filters."""
        rows = self._within(filters)
        scores = self.vectors[rows] @ query.astype(np.float32)
        ids = self.ids[rows]
        if filters.after is not None:
            score, track = filters.after
            later = (scores < np.float32(score)) | ((scores == np.float32(score)) & (ids < track))
            scores, ids = scores[later], ids[later]
        if len(scores) > limit:  # every track tied with the limit-th stays in: ties are then ordered by id
            kth = -np.partition(-scores, limit - 1)[limit - 1]
            top = scores >= kth
            scores, ids = scores[top], ids[top]
        order = np.lexsort((-ids, -scores))[:limit]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def _within(self, filters: Filters) -> np.ndarray:
        keep = np.ones(len(self.ids), bool)
        if filters.camera is not None:
            code = self._codes.get(filters.camera)
            if code is None:
                return np.empty(0, np.int64)
            keep &= self.cameras == code
        if filters.since is not None:
            keep &= self.last >= micros(filters.since)
        if filters.until is not None:
            keep &= self.first <= micros(filters.until)
        if filters.exclude is not None:
            keep &= self.ids != filters.exclude
        return np.flatnonzero(keep)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            np.savez(
                file,
                ids=self.ids,
                vectors=self.vectors,
                cameras=self.cameras,
                first=self.first,
                last=self.last,
                camera_names=np.asarray(self.camera_names, dtype=str),
            )
        partial.replace(path)  # atomic: a crash leaves the previous file or none, never half of one

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        with np.load(path, allow_pickle=False) as saved:
            index = cls(int(saved["vectors"].shape[1]))
            index.ids, index.vectors, index.cameras = saved["ids"], saved["vectors"], saved["cameras"]
            index.first, index.last = saved["first"], saved["last"]
            index.camera_names = [str(name) for name in saved["camera_names"]]
        index._codes = {name: code for code, name in enumerate(index.camera_names)}
        return index
