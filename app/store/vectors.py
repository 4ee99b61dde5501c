"""One model's appearance embeddings in memory, with the metadata the filters read, searched exactly or through an
approximate graph (:class:`~app.store.graph.Graph`) depending on how many rows the filters keep.

The camera and time filters (and the track left out) are always evaluated exactly, on numpy arrays, first. When few
rows pass (``EXACT_BELOW``), one matrix product over just those rows ranks them: the true answer, and cheaper than a
graph walk that must skip most nodes. When many pass, the graph is asked for candidates within a bitmap of the rows
that pass, and the candidates are re-ranked by the same exact product; a page the candidates cannot fill (a deep
page, a cursor far down) asks for more, then falls back to exact. So every page is in exact score order and keyset
pagination holds; what the graph may do is miss a track (recall@10 in benchmarks/similar.py).

The arrays are saved as one ``.npz`` file and the graph as FAISS's own file beside it (``save``/``load``): no
pickle, so a file in the data dir cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .graph import Graph

SCORED_AT_ONCE = 256  # rows per block of an exact product (VectorIndex.scores)
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
    """Ids, cameras, first/last seen times and graph slots of one model's tracks, appended and removed in place, and
    the graph, whose copy of the unit vectors is the only one held (a second would double the memory)."""

    FIELDS = ("ids", "cameras", "first", "last", "slots")
    EXACT_BELOW = 100_000  # rows passing the filters below which a search is exact (benchmarks/similar.py)
    CANDIDATES = 512  # the fewest candidates asked of the graph (its efSearch): recall@10 >= 0.95 at 1 M
    MOST_CANDIDATES = 6_400  # beyond this many, exact search is cheaper than widening the graph's walk
    DEAD_SHARE = 0.25  # erased slots beyond this share of the graph make ``load`` refuse it (the caller rebuilds)

    def __init__(self, width: int) -> None:
        self.width = width
        self.size = 0
        self.graph = Graph(width)
        # Buffers with room to grow (doubling): appending one track copies nothing. The public arrays are views.
        self._buffers: dict[str, np.ndarray] = {
            "ids": np.empty(0, np.int64),
            "cameras": np.empty(0, np.int32),  # codes into camera_names
            "first": np.empty(0, np.int64),
            "last": np.empty(0, np.int64),
            "slots": np.empty(0, np.int64),  # each row's place in the graph, ascending (rows keep graph order)
        }
        self.camera_names: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return self.size

    @property
    def ids(self) -> np.ndarray:
        return self._buffers["ids"][: self.size]

    @property
    def cameras(self) -> np.ndarray:
        return self._buffers["cameras"][: self.size]

    @property
    def first(self) -> np.ndarray:
        return self._buffers["first"][: self.size]

    @property
    def last(self) -> np.ndarray:
        return self._buffers["last"][: self.size]

    @property
    def slots(self) -> np.ndarray:
        return self._buffers["slots"][: self.size]

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
        vectors = vectors.astype(np.float32)
        self._append(
            ids=np.asarray(ids, np.int64),
            cameras=np.asarray([self._code(c) for c in cameras], np.int32),
            first=np.asarray([micros(t) for t in first], np.int64),
            last=np.asarray([micros(t) for t in last], np.int64),
            slots=self.graph.add(vectors),
        )

    def remove(self, ids: list[int]) -> int:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self.graph.erase(self.slots[~keep])
            self._set(**{name: getattr(self, name)[keep] for name in self.FIELDS})
        return removed

    def vector(self, track: int) -> np.ndarray | None:
        found = np.flatnonzero(self.ids == track)
        return self.graph.stored()[self.slots[found[0]]].copy() if len(found) else None

    def scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The exact cosine similarity of ``query`` (unit, float32) to each of ``rows``, a block of rows at a time
        (it stays in the core's cache: one 50 k-row BLAS product, spread over threads, was 3x slower on a busy
        machine). Through einsum, whose sum for a row is the same whichever rows share its block; BLAS's can differ
        in the last bit, and a page's cursor compares scores exactly (a row could come back on the next page)."""
        stored, slots = self.graph.stored(), self.slots[rows]
        block = np.empty((min(len(slots), SCORED_AT_ONCE), self.width), np.float32)
        scores = np.empty(len(slots), np.float32)
        for start in range(0, len(slots), SCORED_AT_ONCE):
            part = slots[start : start + SCORED_AT_ONCE]
            np.take(stored, part, axis=0, out=block[: len(part)])
            scores[start : start + len(part)] = np.einsum("ij,j->i", block[: len(part)], query)
        return scores

    def search(self, query: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """The ``limit`` most similar tracks (cosine similarity, then the highest id) within the filters."""
        rows = self._within(filters)
        query = query.astype(np.float32)
        if len(rows) < max(1, self.EXACT_BELOW):
            return self._ranked(query, rows, limit, filters.after)
        # Every slot is allowed only when no filter narrows and nothing was erased: the bitmap is then left out.
        allowed = None
        if len(rows) < self.graph.size:
            allowed = np.zeros(self.graph.size, bool)
            allowed[self.slots[rows]] = True
        # A filter keeping a share s of the graph leaves about s of each walk's candidates: ask for 1/s times more.
        wanted = min(round(max(self.CANDIDATES, 4 * limit) * self.graph.size / len(rows)), self.MOST_CANDIDATES)
        while True:
            candidates = np.searchsorted(self.slots, self.graph.search(query, wanted, allowed))
            page = self._ranked(query, candidates, limit, filters.after)
            if len(page) == limit or len(candidates) == len(rows):  # a full page, or every row a candidate
                return page
            if wanted == self.MOST_CANDIDATES:
                return self._ranked(query, rows, limit, filters.after)
            wanted = min(4 * wanted, self.MOST_CANDIDATES)

    def similarities(self, query: np.ndarray, filters: Filters) -> dict[int, float]:
        """Every track within ``filters``: its exact cosine with ``query`` (a scan: no ranking, no graph)."""
        rows = self._within(filters)
        return dict(zip(self.ids[rows].tolist(), self.scores(query.astype(np.float32), rows).tolist(), strict=True))

    def _ranked(
        self, query: np.ndarray, rows: np.ndarray, limit: int, after: tuple[float, int] | None
    ) -> list[tuple[int, float]]:
        """The best ``limit`` of ``rows`` by their exact score, below the cursor ``after``."""
        scores, ids = self.scores(query, rows), self.ids[rows]
        if after is not None:
            score, track = after
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
        """The graph first (it holds the vectors), then the arrays: ``load`` checks one against the other, and the
        caller checks the arrays against the table, so a crash between the two leaves a pair that is refused."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.graph.save(self.graph_path(path))
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            np.savez(
                file,
                camera_names=np.asarray(self.camera_names, dtype=str),
                **{f: getattr(self, f) for f in self.FIELDS},
            )
        partial.replace(path)  # atomic: a crash leaves the previous file or none, never half of one

    @staticmethod
    def graph_path(path: Path) -> Path:
        return path.with_suffix(".hnsw")

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Raises ValueError when the graph beside the arrays lacks a row's slot, holds no unit vector at one, or
        has too many erased slots (OSError, KeyError: a file is missing or not readable)."""
        graph = Graph.load(cls.graph_path(path))
        with np.load(path, allow_pickle=False) as saved:
            index = cls(graph.width)
            index._set(**{name: saved[name] for name in cls.FIELDS})
            index.camera_names = [str(name) for name in saved["camera_names"]]
        index._codes = {name: code for code, name in enumerate(index.camera_names)}
        index.graph = graph
        index._check_graph()
        return index

    def _check_graph(self) -> None:
        slots, size = self.slots, self.graph.size
        if len(slots) and (slots[-1] >= size or np.any(np.diff(slots) <= 0)):
            raise ValueError("the graph has no slot for some rows")
        if size - len(slots) > self.DEAD_SHARE * size:
            raise ValueError(f"{size - len(slots)} of the graph's {size} slots are erased")
        sample = np.random.default_rng(0).choice(slots, min(len(slots), 1000), replace=False)
        if not np.allclose(np.linalg.norm(self.graph.stored()[sample], axis=1), 1, atol=1e-3):
            raise ValueError("the graph holds no embedding at some rows' slots (erased after it was saved)")
        dead = np.ones(size, bool)
        dead[slots] = False
        self.graph.erase(np.flatnonzero(dead))  # a graph saved before an erasure the arrays know of
