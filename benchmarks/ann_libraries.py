"""Which approximate-nearest-neighbour library serves appearance search: usearch, FAISS (HNSW) and hnswlib, each
building an HNSW graph of the same random unit vectors, measured for build time, memory, query p50/p95 and
recall@10 against the exact answer (one query at a time, as the service asks).

    pip install usearch faiss-cpu hnswlib   # only usearch is a dependency of the service
    nice -n 10 python -m benchmarks.ann_libraries --sizes 100000 1000000 --width 240

All three get the same graph (M 16, 40 candidates while building) and the same list of candidates while searching
(``--ef``); threads: every core while building, one while searching. Memory: the process's resident size grown by
the build, per million vectors. Random unit vectors are the hard case for a graph (no clusters to follow).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from .similar import appearances, resident_mib, unit

CONNECTIVITY, EXPANSION_ADD = 16, 40


Searcher = tuple[Callable[[np.ndarray], np.ndarray], Callable[[int], None]]  # search one query; set the ef


def build_usearch(vectors: np.ndarray) -> Searcher:
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=CONNECTIVITY)
    index.expansion_add = EXPANSION_ADD
    index.add(np.arange(len(vectors), dtype=np.uint64), vectors)

    def set_ef(ef: int) -> None:
        index.expansion_search = ef

    return lambda query: index.search(query, 10, threads=1).keys, set_ef


def build_faiss(vectors: np.ndarray) -> Searcher:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EXPANSION_ADD
    index.add(vectors)
    faiss.omp_set_num_threads(1)

    def set_ef(ef: int) -> None:
        index.hnsw.efSearch = ef

    return lambda query: index.search(query[None], 10)[1][0], set_ef


def build_hnswlib(vectors: np.ndarray) -> Searcher:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
    index.add_items(vectors, np.arange(len(vectors)))
    index.set_num_threads(1)
    return lambda query: index.knn_query(query, 10)[0][0], index.set_ef


LIBRARIES = {"usearch": build_usearch, "faiss": build_faiss, "hnswlib": build_hnswlib}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--random", action="store_true", help="isotropic random vectors instead of appearances")
    args = parser.parse_args(argv)
    for size in args.sizes:
        rng = np.random.default_rng(1)
        if args.random:
            vectors = unit(rng.standard_normal((size, args.width), dtype=np.float32))
        else:
            vectors = appearances(size, args.width, rng)
        queries = vectors[rng.integers(size, size=args.queries)]
        exact = np.argpartition(-(queries @ vectors.T), 10, axis=1)[:, :10]  # the ten best, in any order
        for library in args.libraries:
            before, began = resident_mib(), time.perf_counter()
            search, set_ef = LIBRARIES[library](vectors)
            built, grown = time.perf_counter() - began, resident_mib() - before
            print(f"{library} {size}: built in {built:.0f} s, {grown / size * 1e6:.0f} MiB per million", flush=True)
            for ef in args.ef:
                set_ef(ef)
                latencies, hits = [], 0
                for query, truth in zip(queries, exact, strict=True):
                    began = time.perf_counter()
                    found = search(query)
                    latencies.append(time.perf_counter() - began)
                    hits += len(set(found.tolist()) & set(truth.tolist()))
                p50, p95 = np.percentile(latencies, [50, 95]) * 1000
                recall = hits / (10 * len(queries))
                print(f"  ef {ef:4d}: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  recall@10 {recall:.3f}", flush=True)
            del search, set_ef
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
