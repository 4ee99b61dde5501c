"""Appearance search at scale: the insert rate of tracks with embeddings, and the build time, latency, recall and
memory of similar-track search over 100 k and 1 M stored embeddings.

    nice -n 10 python -m benchmarks.similar --sizes 100000 1000000 --width 240

Inserts: ``--insert`` tracks through ``TrackStore.add`` (SQLite under a temporary folder, 50 a call) with
``TrackEmbeddings`` listening, against the same tracks without embeddings: tracks/s of each. Searches: a
``VectorIndex`` (its arrays and its graph) of ``size`` embeddings shaped like a model's (``appearances``) of
``--width`` (240: the side width of vtfpar-b16 and -l14; 32: the demo's) over ``--cameras`` cameras and 30 days,
built in parts of 100 k as a rebuild from the table goes (timed); ``--queries`` searches of limit 10 with no
filter, with one camera, with one camera and a 24 h window, and with every camera's 7 days, timed (p50, p95), each
with the share that went through the graph (the rest were exact: fewer rows than ``--exact-below`` passed the
filters; several values compare thresholds on one index). Recall@10 is against a full sort of the same rows'
scores. Memory: the index's arrays and graph, per million tracks.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from app.store import AttributeSpec, ModelSpec, NewTrack, TrackEmbeddings, TrackStore
from app.store.vectors import Filters, VectorIndex

START = datetime(2026, 1, 1)
DAY_US = 86_400 * 10**6


def held_bytes(index: VectorIndex) -> int:
    """The index's arrays, and its graph: FAISS's copy of the vectors and the HNSW links, levels and offsets."""
    arrays = sum(getattr(index, name).nbytes for name in index.FIELDS)
    hnsw = index.graph.index.hnsw
    links = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
    return arrays + index.graph.size * index.width * 4 + links


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def appearances(size: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` unit embeddings shaped like a model's: people (``size / 2``, each seen about twice) drawn in a space
    of 32 directions (what varies between people: clothing, colours, build), mapped into ``width``, plus noise of
    half the signal's size in every direction (the sighting's camera, pose and light). Isotropic random vectors are
    not what a model gives and no graph index finds their neighbours (recall@10 0.4-0.7 at 100 k, width 240:
    ``benchmarks.ann_libraries --random``)."""
    people = rng.standard_normal((size // 2 + 1, 32), dtype=np.float32)
    mapping = rng.standard_normal((32, width), dtype=np.float32) / np.sqrt(32)
    looks = people[rng.integers(0, len(people), size)] @ mapping
    return unit(looks + 0.5 * rng.standard_normal((size, width), dtype=np.float32) / np.sqrt(width))


def insert_rate(count: int, width: int, embed: bool) -> float:
    model = ModelSpec("bench", "000000000000", "one", (AttributeSpec("hat", "hat", "a hat", 0.5),))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        store = TrackStore.open(None, Path(folder), keep_thumbnails=False)
        if embed:
            TrackEmbeddings.attach(store, Path(folder))
        at = datetime(2026, 1, 1, tzinfo=UTC)
        vectors = unit(rng.standard_normal((count, width)))
        began = time.perf_counter()
        for start in range(0, count, 50):
            tracks = [
                NewTrack(f"cam-{i % 20}", "stream", i, at, at + timedelta(seconds=9), [[0.0, 1, 2, 3, 4]], 3, [0.4])
                for i in range(start, min(start + 50, count))
            ]
            for i, track in enumerate(tracks):
                track.embedding = vectors[start + i]
            store.add(model, tracks)
        seconds = time.perf_counter() - began
        store.close()
    return count / seconds


def filled_index(size: int, width: int, cameras: int) -> VectorIndex:
    rng = np.random.default_rng(1)
    looks = appearances(size, width, rng)
    index = VectorIndex(width)
    first = [START + timedelta(microseconds=int(us)) for us in rng.integers(0, 30 * DAY_US, size)]
    last = [moment + timedelta(seconds=int(s)) for moment, s in zip(first, rng.integers(1, 60, size), strict=True)]
    cameras_of = [f"cam-{c}" for c in rng.integers(0, cameras, size)]
    for start in range(0, size, 100_000):  # in parts, as a rebuild from the table goes
        end = min(start + 100_000, size)
        ids = list(range(start + 1, end + 1))
        index.add(ids, looks[start:end], cameras_of[start:end], first[start:end], last[start:end])
    return index


def timed_searches(index: VectorIndex, queries: int, filters_of) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(2)
    latencies, recalls, graphed = [], [], 0
    for _ in range(queries):
        query = index.vector(int(index.ids[rng.integers(len(index))]))
        filters = filters_of(rng)
        graphed += len(index._within(filters)) >= index.EXACT_BELOW
        began = time.perf_counter()
        found = index.search(query, 10, filters)
        latencies.append(time.perf_counter() - began)
        rows = index._within(filters)
        exact = index.ids[rows][np.argsort(-index.scores(query, rows), kind="stable")[:10]]  # a full sort
        recalls.append(len({i for i, _ in found} & set(exact.tolist())) / max(1, min(10, len(exact))))
    ms = np.percentile(latencies, [50, 95]) * 1000
    return float(ms[0]), float(ms[1]), float(np.mean(recalls)), graphed / queries


def day_of(rng: np.random.Generator, cameras: int) -> Filters:
    since = START + timedelta(days=int(rng.integers(29)))
    return Filters(camera=f"cam-{rng.integers(cameras)}", since=since, until=since + timedelta(days=1))


def week_of(rng: np.random.Generator) -> Filters:
    """A wide filter: every camera's week (a quarter of the tracks), which the graph answers within a bitmap."""
    since = START + timedelta(days=int(rng.integers(23)))
    return Filters(since=since, until=since + timedelta(days=7))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--insert", type=int, default=5000, help="tracks inserted for the insert rate (0: skip)")
    parser.add_argument(
        "--exact-below", type=int, nargs="+", default=[VectorIndex.EXACT_BELOW], help="VectorIndex.EXACT_BELOW, each"
    )
    parser.add_argument("--candidates", type=int, default=VectorIndex.CANDIDATES, help="VectorIndex.CANDIDATES")
    args = parser.parse_args(argv)
    VectorIndex.CANDIDATES = args.candidates
    if args.insert:
        plain, embedded = (insert_rate(args.insert, args.width, embed) for embed in (False, True))
        print(f"insert: {plain:.0f} tracks/s without embeddings, {embedded:.0f} with ({embedded / plain:.2f}x)")
    cases = {
        "no filter": lambda rng: Filters(),
        "one camera": lambda rng: Filters(camera=f"cam-{rng.integers(args.cameras)}"),
        "camera + 24 h": lambda rng: day_of(rng, args.cameras),
        "7 days, all": lambda rng: week_of(rng),
    }
    for size in args.sizes:
        began = time.perf_counter()
        index = filled_index(size, args.width, args.cameras)
        built, held = time.perf_counter() - began, held_bytes(index) / 2**20
        print(
            f"{size} embeddings of width {args.width}: built in {built:.0f} s, {held / size * 1e6:.0f} MiB per million"
            f" tracks (arrays and graph), {args.candidates} candidates",
            flush=True,
        )
        for exact_below in args.exact_below:
            VectorIndex.EXACT_BELOW = exact_below
            print(f" exact below {exact_below} rows")
            for name, filters_of in cases.items():
                p50, p95, recall, graphed = timed_searches(index, args.queries, filters_of)
                print(
                    f"  {name:<14} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  recall@10 {recall:.3f}  graph {graphed:.0%}",
                    flush=True,
                )
        del index
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
