"""An approximate nearest-neighbour graph over one model's embeddings: FAISS's HNSW, inner product on unit vectors.

FAISS was chosen by measurement over usearch and hnswlib (benchmarks/ann_libraries.py; docs/search.md,
"Appearance search"), and for two things the others lack from Python: a filter evaluated inside the graph walk (a
bitmap of the slots a search may answer, which carries the camera and time filters and hides erased slots) and
wheels for every platform the project installs on. Its HNSW cannot remove a vector, so erasing one overwrites it
with zeros (the person's embedding leaves memory and the saved file) and its slot stays out of every answer;
``VectorIndex`` rebuilds the graph when such dead slots grow too many.

Slots are positions in insertion order. The file is FAISS's own format (``write_index``/``read_index``), no pickle.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

CONNECTIVITY = 16  # HNSW's M: links per node
BUILD_CANDIDATES = 40  # efConstruction
PARALLEL_FROM = 10_000  # vectors added at once from which FAISS builds on every core (a rebuild, not a stream)


class Graph:
    def __init__(self, width: int, index: faiss.IndexHNSWFlat | None = None) -> None:
        if index is None:
            index = faiss.IndexHNSWFlat(width, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = BUILD_CANDIDATES
        self.index = index

    @property
    def width(self) -> int:
        return int(self.index.d)

    @property
    def size(self) -> int:
        """Slots, dead ones included."""
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Adds ``vectors`` and answers their slots. A few at a time (a stream's tracks) on one thread: FAISS's
        OpenMP threads cost more than they save there (7x fewer additions per second on a busy 2-core machine)."""
        start, threads = self.size, faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads if len(vectors) >= PARALLEL_FROM else 1)
        try:
            self.index.add(np.ascontiguousarray(vectors, np.float32))
        finally:
            faiss.omp_set_num_threads(threads)
        return np.arange(start, self.size, dtype=np.int64)

    def stored(self) -> np.ndarray:
        """The graph's own copy of the vectors, one row per slot (a writable view, not a copy)."""
        storage = faiss.downcast_index(self.index.storage)
        xb = storage.get_xb()  # type: ignore[attr-defined]  # FAISS's stubs know only the base Index
        return faiss.rev_swig_ptr(xb, self.size * self.index.d).reshape(self.size, self.index.d)

    def erase(self, slots: np.ndarray) -> None:
        """Overwrites the slots' vectors with zeros; callers keep them out of answers with ``search``'s bitmap."""
        if len(slots):
            self.stored()[slots] = 0.0

    def search(self, query: np.ndarray, count: int, allowed: np.ndarray | None) -> np.ndarray:
        """Up to ``count`` slots nearest ``query``, best first, among those ``allowed`` marks (a boolean per slot;
        None: all). The graph walk keeps ``count`` candidates (efSearch), so a larger count also searches wider."""
        params = faiss.SearchParametersHNSW(efSearch=count)  # type: ignore[attr-defined]  # missing from the stubs
        if allowed is not None:
            packed = np.packbits(allowed, bitorder="little")  # FAISS reads slot i as bit i % 8 of byte i // 8
            params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(packed))
        _, found = self.index.search(np.ascontiguousarray(query[None], np.float32), count, params=params)
        return found[0][found[0] >= 0]

    def save(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial")
        faiss.write_index(self.index, str(partial))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Graph:
        """Raises ValueError when the file is not an HNSW graph (OSError when it cannot be read)."""
        if not path.is_file():
            raise FileNotFoundError(path)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ValueError(f"not a FAISS index ({str(exc).splitlines()[0]})") from None
        if not isinstance(index, faiss.IndexHNSWFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("not an HNSW graph of inner products")
        return cls(index.d, index)
