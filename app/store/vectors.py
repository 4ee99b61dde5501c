"""One model's appearance embeddings in memory, searched exactly (a matrix product over the rows the filters keep).

Exact search, not an approximate index: it needs nothing beyond numpy, returns the true nearest tracks (recall 1),
and filters by camera and time before ranking (an approximate graph filters after, and loses results under narrow
filters). Its cost is a scan: at 1 M tracks of width 240 it misses 50 ms p95 without a narrow camera and time
filter (benchmarks/similar.py; docs/search.md, "Appearance search"), which is where an approximate index would pay.

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

    FIELDS = ("ids", "vectors", "cameras", "first", "last")

    def __init__(self, width: int) -> None:
        self.width = width
        self.size = 0
        # Buffers with room to grow (doubling): appending one track copies nothing. The public arrays are views.
        self._buffers: dict[str, np.ndarray] = {
            "ids": np.empty(0, np.int64),
            "vectors": np.empty((0, width), np.float32),
            "cameras": np.empty(0, np.int32),  # codes into camera_names
            "first": np.empty(0, np.int64),
            "last": np.empty(0, np.int64),
        }
        self.camera_names: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return self.size

    @property
    def ids(self) -> np.ndarray:
        return self._buffers["ids"][: self.size]

    @property
    def vectors(self) -> np.ndarray:
        return self._buffers["vectors"][: self.size]

    @property
    def cameras(self) -> np.ndarray:
        return self._buffers["cameras"][: self.size]

    @property
    def first(self) -> np.ndarray:
        return self._buffers["first"][: self.size]

    @property
    def last(self) -> np.ndarray:
        return self._buffers["last"][: self.size]

    def _set(self, **arrays: np.ndarray) -> None:
        """Replaces the contents with ``arrays`` (one per field, equal lengths)."""
        self._buffers = {name: np.ascontiguousarray(arrays[name]) for name in self.FIELDS}
        self.size = len(arrays["ids"])

    def _append(self, **arrays: np.ndarray) -> None:
        count = len(arrays["ids"])
        needed = self.size + count
        if needed > len(self._buffers["ids"]):
            capacity = max(needed, 2 * len(self._buffers["ids"]), 1024)
            for name in self.FIELDS:
                old = self._buffers[name]
                grown = np.empty((capacity, *old.shape[1:]), old.dtype)
                grown[: self.size] = old[: self.size]
                self._buffers[name] = grown
        for name in self.FIELDS:
            self._buffers[name][self.size : needed] = arrays[name]
        self.size = needed

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
        self._append(
            ids=np.asarray(ids, np.int64),
            vectors=vectors.astype(np.float32),
            cameras=np.asarray([self._code(c) for c in cameras], np.int32),
            first=np.asarray([micros(t) for t in first], np.int64),
            last=np.asarray([micros(t) for t in last], np.int64),
        )

    def remove(self, ids: list[int]) -> int:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self._set(**{name: getattr(self, name)[keep] for name in self.FIELDS})
        return removed

    def vector(self, track: int) -> np.ndarray | None:
        found = np.flatnonzero(self.ids == track)
        return self.vectors[found[0]] if len(found) else None

    def search(self, query: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """The ``limit`` most similar tracks (cosine similarity, then the highest id) within the filters."""
        rows = self._within(filters)
        query = query.astype(np.float32)
        # A wide selection: one product over every row is cheaper than copying the selected rows first.
        scores = (self.vectors @ query)[rows] if len(rows) > len(self.ids) // 4 else self.vectors[rows] @ query
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
            index._set(**{name: saved[name] for name in cls.FIELDS})
            index.camera_names = [str(name) for name in saved["camera_names"]]
        index._codes = {name: code for code, name in enumerate(index.camera_names)}
        return index
