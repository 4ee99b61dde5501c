"""The track store at scale: insert rate, and the latency of every search shape over 1,000,000 (or 10,000,000)
stored tracks, in SQLite and in PostgreSQL.

    nice -n 10 python -m benchmarks.store --bulk --tracks 1000000 --out benchmarks/results/<machine>

Tracks have the MARS schema's 43 attributes each, spread over ``--cameras`` cameras and ``--days`` days. With
``--bulk`` they are bulk-loaded (``benchmarks/store_bulk.py``: the rows ``TrackStore.add`` writes, by executemany /
COPY; this measures search, not insert), then ``--insert`` more go in through ``TrackStore.add`` in batches of
``--batch`` (what a busy set of streams does), twice: at random times of the month, and in time order after it (as
live streams store them); their rate is the insert rate. Without ``--bulk`` every track goes in through
``TrackStore.add`` at random times (slow: 1 M takes 15-25 minutes on 2 cores). Then ``--stream-tracks`` stream
tracks of 512 boxes each, one per call (a live stream's write). The store is reopened as at a restart; once the
search columns are built (timed), ``--queries`` searches of each shape are timed end to end (the store's search:
columns, SQL, rows to ``StoredTrack`` objects), each with random attributes and windows, limit 50:

    one camera, 24 h / all cameras, 24 h / one camera, 30 days / everything (two required attributes) /
    everything, one attribute / one required and one excluded, 7 days / a sentence, all cameras, 7 days /
    one stream track read with its 512 boxes (``GET /tracks/{id}``)

PostgreSQL is a throwaway server started in a temporary folder (Debian's binaries, as benchmarks/postgres.py
starts it) unless ``--postgres-url`` names one. Targets: p95 <= 100 ms at 1 M and >= 1,000 tracks/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np

from app.store import AttributeSpec, ModelSpec, Search, TrackStore
from app.store.columns import Columns
from app.store.records import naive_utc
from app.store.search import asked
from app.store.sentence import read_sentence
from model import load_schema

from .postgres import PostgresServer, missing
from .store_bulk import START, batch, bulk_load


def served_model() -> ModelSpec:
    schema = load_schema("mars")
    return ModelSpec(
        "bench", "000000000000", "mars", tuple(AttributeSpec(a.name, a.group, a.phrase, 0.5) for a in schema.attributes)
    )


def inserted(store: TrackStore, model: ModelSpec, count: int, args, seed: int, in_order: bool = False) -> float:
    """Stores ``count`` tracks through ``TrackStore.add`` in batches of ``args.batch``; the rate in tracks/s (data
    generation not counted). ``in_order``: seen one after another after the month, as live streams store them
    (their times, and so the indexes' keys, grow); otherwise at random times of the month."""
    rng = np.random.default_rng(seed)
    month_end = START + timedelta(days=args.days)
    gap = timedelta(days=args.days) / max(args.tracks, 1)  # the loaded tracks' rate
    spent = 0.0
    for done in range(0, count, args.batch):
        tracks = batch(rng, min(args.batch, count - done), args.cameras, args.days, len(model.attributes))
        if in_order:
            for i, track in enumerate(tracks, start=done):
                seen = track.last_seen - track.first_seen
                track.first_seen = month_end + i * gap
                track.last_seen = track.first_seen + seen
        started = time.perf_counter()
        store.add(model, tracks)
        spent += time.perf_counter() - started
        if done % 100_000 == 0:
            print(f"  {done:>9} tracks, {done / spent if spent else 0:.0f}/s", flush=True)
    return count / spent


QUANTILES = ("p50_ms", "p95_ms", "p99_ms")
SENTENCES = [
    "a woman with a backpack and no hat",
    "a man in a black top, not carrying a handbag",
    "someone walking with long hair in a blue top",
    "a woman not wearing a hat",
]


def shapes(rng: random.Random, names: list[str], args) -> dict[str, Callable[[], dict]]:
    """Each shape: a function drawing one search's parameters."""
    day, month = 24 * 3600.0, args.days * 86400

    def window(seconds: float) -> dict:
        since = START + timedelta(seconds=rng.uniform(0, max(0.0, month - seconds)))
        return {"since": since, "until": since + timedelta(seconds=seconds)}

    def camera() -> dict:
        return {"camera": f"camera-{rng.randrange(args.cameras)}"}

    def one_of_each() -> dict:
        required, excluded = rng.sample(names, 2)
        return {"required": (required,), "excluded": (excluded,)}

    return {
        "one camera, 24 h": lambda: {"required": tuple(rng.sample(names, 2)), **camera(), **window(day)},
        "all cameras, 24 h": lambda: {"required": tuple(rng.sample(names, 2)), **window(day)},
        "one camera, 30 days": lambda: {"required": tuple(rng.sample(names, 2)), **camera()},
        "everything": lambda: {"required": tuple(rng.sample(names, 2))},
        "everything, one attribute": lambda: {"required": (rng.choice(names),)},
        "required + excluded, 7 days": lambda: {**one_of_each(), **window(7 * day)},
        "sentence, 7 days": lambda: {"sentence": rng.choice(SENTENCES), **window(7 * day)},
    }


def percentiles(took: list[float], found: list[int]) -> dict:
    took = sorted(took)
    return {
        "p50_ms": round(statistics.median(took), 2),
        "p95_ms": round(took[int(0.95 * (len(took) - 1))], 2),
        "p99_ms": round(took[int(0.99 * (len(took) - 1))], 2),
        "max_ms": round(took[-1], 2),
        "mean_results": round(statistics.mean(found), 1),
    }


def searches(store: TrackStore, model: ModelSpec, streamed: list[int], args) -> dict:
    rng = random.Random(1)
    results = {}
    for shape, draw in shapes(rng, model.names, args).items():
        took, found = [], []
        for _ in range(args.queries):
            params = draw()
            started = time.perf_counter()
            if sentence := params.pop("sentence", None):  # reading the sentence is part of the search
                reading = read_sentence(sentence, model)
                params |= {"required": reading.required, "excluded": reading.excluded}
            page = store.search(Search(**params, limit=50), model)
            took.append((time.perf_counter() - started) * 1000)
            found.append(len(page.tracks))
        results[shape] = percentiles(took, found)
        print(f"  {shape}: {results[shape]}", flush=True)
    if streamed:
        took, found = [], []
        for _ in range(args.queries):
            started = time.perf_counter()
            track = store.get(rng.choice(streamed))
            took.append((time.perf_counter() - started) * 1000)
            found.append(len(track.boxes or []) if track else 0)
        results["one stream track, 512 boxes"] = percentiles(took, found)
        print(f"  one stream track, 512 boxes: {results['one stream track, 512 boxes']}", flush=True)
    return results


def stream_tracks(store: TrackStore, model: ModelSpec, count: int, args) -> tuple[float, list[int]]:
    """Stream tracks of 512 boxes each, stored one per call; the rate in tracks/s, and their ids."""
    rng = np.random.default_rng(2)
    spent, ids = 0.0, []
    for _ in range(count):
        [track] = batch(rng, 1, args.cameras, args.days, len(model.attributes))
        track.boxes = [[i * 0.04, 10.0 + i, 20.0, 60.0 + i, 180.0] for i in range(512)]
        started = time.perf_counter()
        ids += store.add(model, [track])
        spent += time.perf_counter() - started
    return (count / spent if count else 0.0), ids


def run(name: str, url: str | None, data_dir: Path, args) -> dict:
    model = served_model()
    store = TrackStore.open(url, data_dir, keep_thumbnails=False)
    result: dict = {"load_1min_before": round(os.getloadavg()[0], 1)}
    if args.bulk:
        print(f"{name}: bulk-loading {args.tracks} tracks", flush=True)
        result["bulk_load_s"] = round(bulk_load(store, model, args.tracks, args.cameras, args.days))
        print(f"{name}: inserting {args.insert} tracks at random times, then {args.insert} in time order", flush=True)
        result["insert_tracks_per_s"] = round(inserted(store, model, args.insert, args, seed=3))
        result["insert_in_time_order_per_s"] = round(inserted(store, model, args.insert, args, seed=4, in_order=True))
    else:
        print(f"{name}: filling {args.tracks} tracks", flush=True)
        result["insert_tracks_per_s"] = round(inserted(store, model, args.tracks, args, seed=0))
    result["insert_batch"] = args.batch
    result["load_1min_after_insert"] = round(os.getloadavg()[0], 1)
    streams, streamed = stream_tracks(store, model, args.stream_tracks, args)
    result["stream_512_boxes_per_s"] = round(streams)
    print(f"{name}: {result}; building the columns", flush=True)
    store.close()  # a restart: the columns are built from the database, as at a service's start
    started = time.perf_counter()
    store = TrackStore.open(url, data_dir, keep_thumbnails=False)
    while not store.columns.ready:
        time.sleep(0.05)
    built = time.perf_counter() - started
    print(f"{name}: columns built in {built:.1f} s; searching", flush=True)
    result["columns_build_s"] = round(built, 1)
    result["load_1min_before_search"] = round(os.getloadavg()[0], 1)
    result["shapes"] = searches(store, model, streamed, args)
    result["load_1min_after_search"] = round(os.getloadavg()[0], 1)
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    store.close()
    print(f"{name}: {result}", flush=True)
    return result


def columns_alone(count: int, args) -> dict:
    """The columns' part of each shape (choosing candidates; the database's exact ranking of ~66 ids by primary key
    does not grow with the table) on ``count`` synthetic tracks held in memory only: the evidence for sizes whose
    database does not fit the machine. Fills the columns' arrays directly (reading them from a database is what
    the full run measures)."""
    model = served_model()
    rng = np.random.default_rng(0)
    columns = Columns(engine=None)  # type: ignore[arg-type]  # never touches a database here
    columns._reserve(count, len(model.attributes))
    month_us = int(args.days * 86400e6)
    start_us = int(START.replace(tzinfo=None).timestamp() * 1e6)
    columns._ids[:count] = np.arange(1, count + 1)
    columns._model[:count] = 1
    columns._camera[:count] = rng.integers(0, args.cameras, count)
    columns._first[:count] = start_us + rng.integers(0, month_us, count)
    columns._last[:count] = columns._first[:count] + rng.integers(2_000_000, 120_000_000, count)
    columns._alive[:count] = True
    for column in range(len(model.attributes)):
        columns._p[column, :count] = rng.beta(0.6, 0.9, count)
    columns._cameras = {f"camera-{c}": c for c in range(args.cameras)}
    columns._size = count
    results = {}
    for shape, draw in shapes(random.Random(1), model.names, args).items():
        took = []
        for _ in range(args.queries):
            params = draw()
            if sentence := params.pop("sentence", None):
                reading = read_sentence(sentence, model)
                params |= {"required": reading.required, "excluded": reading.excluded}
            search = Search(**params, limit=50)
            since, until = (None if t is None else naive_utc(t) for t in (search.since, search.until))
            started = time.perf_counter()
            columns.plan(1, asked(search, model), search.camera, since, until, None, 50 + 16)
            took.append((time.perf_counter() - started) * 1000)
        took.sort()
        results[shape] = {
            "p50_ms": round(statistics.median(took), 2),
            "p95_ms": round(took[int(0.95 * (len(took) - 1))], 2),
        }
        print(f"  columns alone, {count} tracks, {shape}: {results[shape]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--queries", type=int, default=50, help="searches per shape")
    parser.add_argument("--stream-tracks", type=int, default=2000, help="stream tracks of 512 boxes stored")
    parser.add_argument("--bulk", action="store_true", help="bulk-load the tracks (measures search, not insert)")
    parser.add_argument("--insert", type=int, default=20_000, help="with --bulk: tracks timed through add, per order")
    parser.add_argument("--batch", type=int, default=1000, help="tracks per TrackStore.add call")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", help="an existing (empty) database instead of a throwaway server")
    parser.add_argument(
        "--columns-alone", type=int, metavar="N", help="only time the columns' part of each shape on N tracks in memory"
    )
    parser.add_argument("--out", type=Path, help="folder for store-<tracks>.json and .md")
    parser.add_argument("--tmp", type=Path, help="where the databases are built (default: the system's temp folder)")
    args = parser.parse_args()
    if args.columns_alone:
        print(json.dumps({"tracks": args.columns_alone, "columns_alone": columns_alone(args.columns_alone, args)}))
        return
    results = {}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vtfpar-store-bench-", dir=args.tmp) as folder:
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = run("sqlite", None, Path(folder) / "sqlite", args)
        if args.backend in ("postgres", "both"):
            if args.postgres_url:
                results["postgresql"] = run("postgresql", args.postgres_url, Path(folder) / "pg", args)
            elif (reason := missing()) is None:
                with PostgresServer({"shared_buffers": "512MB"}) as server:
                    results["postgresql"] = run("postgresql", server.url, Path(folder) / "pg", args)
            else:
                print(f"postgresql skipped: {reason}")
    report = {
        "tracks": args.tracks,
        "bulk": args.bulk,
        "cameras": args.cameras,
        "days": args.days,
        "queries": args.queries,
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"store-{args.tracks}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict) -> str:
    names = list(report["results"])
    shapes = list(next(iter(report["results"].values()))["shapes"]) if names else []
    head = " | ".join(f"{name} p50 | p95 | p99" for name in names)
    rows = [
        f"| {shape} | "
        + " | ".join(" | ".join(f"{report['results'][n]['shapes'][shape][k]:g}" for k in QUANTILES) for n in names)
        + " |"
        for shape in shapes
    ]
    facts = [
        f"- {name}: " + ", ".join(f"{key} {value}" for key, value in result.items() if key != "shapes")
        for name, result in report["results"].items()
    ]
    command = "python -m benchmarks.store" + (" --bulk" if report["bulk"] else "") + f" --tracks {report['tracks']}"
    return "\n".join(
        [
            "# Benchmark: the track store",
            "",
            f"`nice -n 10 {command}`, {report['wall_s']} s, {report['machine']}; load average (1 min) "
            f"{report['load_1min'][0]} at the start, {report['load_1min'][1]} at the end: a shared machine.",
            "",
            f"{report['tracks']} tracks of 43 attributes over {report['cameras']} cameras and {report['days']:g} "
            f"days; {report['queries']} searches per shape, limit 50, times in ms. Targets: p95 <= 100 ms at 1 M "
            "(500 ms at 10 M), >= 1,000 tracks/s.",
            "",
            f"| shape | {head} |",
            "|---|" + "---|" * (3 * len(names)),
            *rows,
            "",
            *facts,
            "",
        ]
    )


if __name__ == "__main__":
    main()
