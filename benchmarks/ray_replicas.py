"""Throughput on Ray Serve with 1 and with 2 model replicas, on the same load, in one run on one Ray instance.

Starts ``python -m app.ray`` twice on one local Ray instance: an application with 2 model replicas at ``/`` and,
joining it, one with 1 model replica at ``/one``, both with the same ingress replicas. Then it loads each in turn
(``--rounds`` times, alternating, so that other work on the machine weighs on both alike) with C concurrent clients
posting distinct synthetic H.264 clips (``benchmarks.load``'s), and prints clips/s, latency, the mean batch and
the ratio of 2 to 1 model replicas. The CPU load of the machine before and after is printed too: on a shared
machine, compare runs only with the load they ran under.

    python benchmarks/ray_replicas.py                     # CPU, the demo model; a few minutes on 2 cores
    python benchmarks/ray_replicas.py --model-gpus 0.5    # GPU host: two model replicas share one GPU
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import LoadResult, generate_load, synthetic_clips  # noqa: E402
from benchmarks.servers import RayServeProcess, free_port, ray_environment  # noqa: E402

START_TIMEOUT_S = 600


def measure(url: str, clips: list[bytes], args) -> LoadResult:
    return asyncio.run(generate_load(url, clips, args.concurrency, args.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per application and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingress-replicas", default="2")
    # Ray's CPUs are slots: a quarter each lets both applications' replicas onto a 2-core machine's two slots.
    parser.add_argument("--ingress-cpus", type=float, default=0.25)
    parser.add_argument("--model-cpus", type=float, default=0.25)
    parser.add_argument("--model-gpus", type=float, default=0.0)
    parser.add_argument("--max-batch", type=int, default=8, help="VTFPAR_MAX_BATCH_CLIPS")
    parser.add_argument("--checkpoint", help="VTFPAR_CHECKPOINT (default: the built-in demo model)")
    parser.add_argument("--clips", type=int, default=32, help="distinct synthetic clips")
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="length of each synthetic clip (25 fps)")
    parser.add_argument("--size", default="128x256", help="WIDTHxHEIGHT of the synthetic clips (MARS crops: 128x256)")
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    clips = synthetic_clips(args.clips, args.clip_seconds, width, height)
    settings = {
        "PYTHONPATH": str(ROOT),
        "VTFPAR_DEVICE": "cuda" if args.model_gpus else "cpu",
        "VTFPAR_MAX_BATCH_CLIPS": str(args.max_batch),
        "VTFPAR_MAX_QUEUE": str(max(64, 2 * args.concurrency)),
        **({"VTFPAR_CHECKPOINT": args.checkpoint} if args.checkpoint else {}),
    }
    resources = [
        *("--ingress-replicas", args.ingress_replicas, "--ingress-cpus", str(args.ingress_cpus)),
        *("--model-cpus", str(args.model_cpus), "--model-gpus", str(args.model_gpus)),
    ]
    print(
        f"{args.clips} synthetic H.264 clips of {args.clip_seconds:g} s at {width}x{height}; concurrency "
        f"{args.concurrency}, {args.seconds:g} s per run, {args.ingress_replicas} ingress replicas; "
        f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}"
    )
    ray_tmp = tempfile.mkdtemp(prefix="vtfpar-ray-")
    env = {**ray_environment(ray_tmp), **settings}
    port = free_port()
    results: dict[str, list[LoadResult]] = {"1 model replica": [], "2 model replicas": []}
    try:
        with tempfile.TemporaryDirectory() as logs:
            two_flags = ["--model-replicas", "2", *resources]
            with RayServeProcess(two_flags, Path(logs) / "two.log", env, port) as two:
                joined = {**env, "RAY_ADDRESS": two.ray_address(START_TIMEOUT_S)}
                one_flags = ["--model-replicas", "1", "--name", "one", "--route-prefix", "/one", *resources]
                with RayServeProcess(one_flags, Path(logs) / "one.log", joined, port) as one:
                    two.wait_until_ok(f"{two.url}/health/ready", START_TIMEOUT_S)
                    one.wait_until_ok(f"{two.url}/one/health/ready", START_TIMEOUT_S)
                    for _ in range(args.rounds):
                        results["1 model replica"].append(measure(f"{two.url}/one", clips, args))
                        results["2 model replicas"].append(measure(two.url, clips, args))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{'run':<18} {'clips/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean batch':>10}  errors")
    for name, runs in results.items():
        for round_number, result in enumerate(runs, 1):
            row = result.summary()
            print(
                f"{name[:16] + ' #' + str(round_number):<18} {row['clips_per_s']:>9.1f} {row['p50_ms']:>8.0f} "
                f"{row['p95_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['mean_batch']:>10.2f}  {row['errors'] or ''}"
            )
    one_rate, two_rate = (sum(r.clips_per_s for r in runs) / len(runs) for runs in results.values())
    print(f"2 / 1 model replicas: {two_rate / one_rate:.2f}x clips/s ({one_rate:.1f} -> {two_rate:.1f})")


if __name__ == "__main__":
    main()
