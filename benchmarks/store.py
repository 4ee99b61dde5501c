"""The track store at scale: insert rate, and the latency of a two-attribute search with a camera and time filter
over 1,000,000 stored tracks, in SQLite and in PostgreSQL.

    nice -n 10 python -m benchmarks.store --tracks 1000000 --out benchmarks/results/<machine>

Tracks go in through ``TrackStore.add`` in batches (what a busy set of streams does), with the MARS schema's 43
attributes each, spread over ``--cameras`` cameras and ``--days`` days; then ``--queries`` searches, each a random
camera, a random window of ``--window-h`` hours and two random attributes (both required), limit 50, are timed
end to end (SQL, rows to ``StoredTrack`` objects). PostgreSQL is a throwaway server started in a temporary folder
(Debian's binaries, as benchmarks/postgres.py starts it) unless ``--postgres-url`` names one. Targets: p95 <= 100 ms and
>= 1,000 tracks/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.store import AttributeSpec, ModelSpec, NewTrack, Search, TrackStore
from model import load_schema

from .postgres import PostgresServer, missing

BATCH = 1000
START = datetime(2026, 1, 1, tzinfo=UTC)


def served_model() -> ModelSpec:
    schema = load_schema("mars")
    return ModelSpec(
        "bench", "000000000000", "mars", tuple(AttributeSpec(a.name, a.group, a.phrase, 0.5) for a in schema.attributes)
    )


def batch(rng: random.Random, size: int, cameras: int, days: float, width: int) -> list[NewTrack]:
    tracks = []
    for _ in range(size):
        first = START + timedelta(seconds=rng.uniform(0, days * 86400))
        tracks.append(
            NewTrack(
                camera=f"camera-{rng.randrange(cameras)}",
                source="stream",
                track_id=rng.randrange(1 << 31),
                first_seen=first,
                last_seen=first + timedelta(seconds=rng.uniform(2, 120)),
                boxes=[[0.0, 10.0, 20.0, 60.0, 180.0], [1.0, 12.0, 20.0, 62.0, 180.0]],
                windows=rng.randrange(1, 8),
                probabilities=[rng.betavariate(0.6, 0.9) for _ in range(width)],
            )
        )
    return tracks


def fill(store: TrackStore, model: ModelSpec, count: int, args) -> float:
    """Inserts ``count`` tracks; the rate in tracks/s (data generation not counted)."""
    rng = random.Random(0)
    spent = 0.0
    for done in range(0, count, BATCH):
        tracks = batch(rng, min(BATCH, count - done), args.cameras, args.days, len(model.attributes))
        started = time.perf_counter()
        store.add(model, tracks)
        spent += time.perf_counter() - started
        if done % 100_000 == 0:
            print(f"  {done:>9} tracks, {done / spent if spent else 0:.0f}/s", flush=True)
    return count / spent


def searches(store: TrackStore, model: ModelSpec, args) -> dict:
    rng = random.Random(1)
    names = model.names
    took, found = [], []
    for _ in range(args.queries):
        since = START + timedelta(seconds=rng.uniform(0, args.days * 86400 - args.window_h * 3600))
        search = Search(
            required=tuple(rng.sample(names, 2)),
            camera=f"camera-{rng.randrange(args.cameras)}",
            since=since,
            until=since + timedelta(hours=args.window_h),
            limit=50,
        )
        started = time.perf_counter()
        page = store.search(search, model)
        took.append((time.perf_counter() - started) * 1000)
        found.append(len(page.tracks))
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 2),
        "p95_ms": round(took[int(0.95 * (len(took) - 1))], 2),
        "p99_ms": round(took[int(0.99 * (len(took) - 1))], 2),
        "max_ms": round(took[-1], 2),
        "mean_results": round(statistics.mean(found), 1),
    }


def run(name: str, url: str | None, data_dir: Path, args) -> dict:
    model = served_model()
    store = TrackStore.open(url, data_dir, keep_thumbnails=False)
    print(f"{name}: filling {args.tracks} tracks", flush=True)
    rate = fill(store, model, args.tracks, args)
    print(f"{name}: {rate:.0f} tracks/s; searching", flush=True)
    result = {"insert_tracks_per_s": round(rate), **searches(store, model, args)}
    store.close()
    print(f"{name}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--window-h", type=float, default=24, help="hours of each search's time window")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", help="an existing (empty) database instead of a throwaway server")
    parser.add_argument("--out", type=Path, help="folder for store.json and store.md")
    args = parser.parse_args()
    results = {}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vtfpar-store-bench-") as folder:
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
        "cameras": args.cameras,
        "days": args.days,
        "window_h": args.window_h,
        "queries": args.queries,
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "store.md").write_text(markdown(report))


def markdown(report: dict) -> str:
    rows = [
        f"| {name} | {r['insert_tracks_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_results']} |"
        for name, r in report["results"].items()
    ]
    return "\n".join(
        [
            "# Benchmark: the track store",
            "",
            f"`python -m benchmarks.store --tracks {report['tracks']}` (nice -n 10), {report['wall_s']} s, "
            f"{report['machine']}; load average (1 min) {report['load_1min'][0]} at the start, "
            f"{report['load_1min'][1]} at the end: a shared machine, figures measured under contention.",
            "",
            f"{report['tracks']} tracks of 43 attributes over {report['cameras']} cameras and {report['days']:g} "
            f"days; {report['queries']} searches, each two required attributes, one camera and a "
            f"{report['window_h']:g} h window, limit 50. Targets: p95 <= 100 ms, >= 1,000 tracks/s.",
            "",
            "| database | insert tracks/s | p50 ms | p95 ms | p99 ms | results per search |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
