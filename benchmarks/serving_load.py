"""Load test for POST /predict: C concurrent clients posting synthetic clips, reported next to the bare model.

By default the script starts the service itself (``python -m app`` in a subprocess, serving a random-weight
checkpoint of --preset) twice: batching on (VTFPAR_MAX_BATCH_CLIPS=--max-batch) and batching off (1). Between
and after, it measures the bare model at the same batch sizes in this process, so every ratio it prints comes
from one run on one machine. With --url it loads an already running server once instead.

    python benchmarks/serving_load.py --preset tiny                                                    # CPU, ~40 s
    python benchmarks/serving_load.py --preset vtfpar-b16 --device cuda --max-batch 16 --concurrency 64 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout: the repository root (app/, model/, and tests/ for its server and clip helpers) comes first
# on the path.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from model_throughput import build_runner, measure  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from model import save_checkpoint  # noqa: E402
from tests.app.media import encode  # noqa: E402
from tests.servers import AppProcess  # noqa: E402


def synthetic_clips(count: int, frames: int, width: int, height: int, fps: int = 25) -> list[bytes]:
    """Distinct H.264 mp4 clips (a textured block drifting over a noisy background)."""
    clips = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        background = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        images = []
        for i in range(frames):
            image = background.copy()
            top = (i * 3 + seed) % (height // 2)
            image[top : top + height // 2, width // 4 : 3 * width // 4] = (seed * 37 % 256, 120, i * 9 % 256)
            images.append(image)
        clips.append(encode("mp4", images, fps=fps))
    return clips


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    mean_batch: float = float("nan")

    @property
    def clips_per_s(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


async def generate_load(url: str, clips: list[bytes], concurrency: int, seconds: float) -> LoadResult:
    """Each of ``concurrency`` clients posts clips back to back for ``seconds`` (after one warm-up round)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def post(i: int) -> httpx.Response:
            return await client.post("/predict", files={"video": ("clip.mp4", clips[i % len(clips)])})

        await asyncio.gather(*(post(i) for i in range(concurrency)))
        batches_before = await _batch_totals(client)
        result, counter = LoadResult(seconds=seconds), iter(range(10**9))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    response = await post(next(counter))
                    status = response.status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                if status == 200:
                    result.latencies.append(time.perf_counter() - start)
                else:
                    result.errors[status] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
        batches, clips_run = (a - b for a, b in zip(await _batch_totals(client), batches_before, strict=True))
        result.mean_batch = clips_run / batches if batches else float("nan")
        return result


async def _batch_totals(client: httpx.AsyncClient) -> tuple[float, float]:
    """Batches run and clips in them, summed over model replicas (on Ray, /metrics has one series per replica)."""
    text = (await client.get("/metrics")).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "vtfpar_batch_size_clips")
    totals = {"vtfpar_batch_size_clips_count": 0.0, "vtfpar_batch_size_clips_sum": 0.0}
    for sample in family.samples:
        if sample.name in totals:
            totals[sample.name] += sample.value
    return totals["vtfpar_batch_size_clips_count"], totals["vtfpar_batch_size_clips_sum"]


def serve_and_load(env: dict[str, str], clips: list[bytes], args) -> LoadResult:
    """Start ``python -m app`` with ``env`` on a free loopback port, load it, stop it."""
    settings = {"VTFPAR_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT), **env}
    with tempfile.TemporaryDirectory() as folder, AppProcess(settings, Path(folder) / "server.log", cwd=ROOT) as server:
        server.wait_ready(timeout_s=600)
        return asyncio.run(generate_load(server.url, clips, args.concurrency, args.seconds))


def report(name: str, result: LoadResult) -> None:
    errors = ", ".join(f"{status}: {n}" for status, n in sorted(result.errors.items(), key=str)) or "0"
    print(
        f"{name:<14} {result.clips_per_s:>9.1f} {result.percentile_ms(50):>8.1f} {result.percentile_ms(95):>8.1f} "
        f"{result.percentile_ms(99):>8.1f} {result.mean_batch:>10.2f}  {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", help="serve this checkpoint instead of a random model of --preset")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=8, help="VTFPAR_MAX_BATCH_CLIPS with batching on")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="VTFPAR_TORCH_THREADS for the server, and the same for the bare-model measurement",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured load per configuration")
    parser.add_argument("--clips", type=int, default=32, help="distinct synthetic clips")
    parser.add_argument("--frames", type=int, default=32, help="frames per synthetic clip")
    parser.add_argument("--size", default="128x256", help="WIDTHxHEIGHT of the synthetic clips (MARS crops: 128x256)")
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    clips = synthetic_clips(args.clips, args.frames, width, height)
    print(
        f"{args.clips} synthetic H.264 clips, {args.frames} frames of {width}x{height}, "
        f"mean {np.mean([len(c) for c in clips]) / 1024:.0f} KiB; concurrency {args.concurrency}, "
        f"{args.seconds:g} s per run"
    )
    header = f"{'run':<14} {'clips/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean batch':>10}  errors"

    if args.url:
        result = asyncio.run(generate_load(args.url, clips, args.concurrency, args.seconds))
        print(header)
        report("target", result)
        return

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    runner = build_runner(args.preset, args.device, args.precision, args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or str(Path(tmp) / f"{args.preset}-random.safetensors")
        if not args.checkpoint:
            save_checkpoint(runner.model, checkpoint)
        env = {
            "VTFPAR_CHECKPOINT": checkpoint,
            "VTFPAR_DEVICE": args.device,
            "VTFPAR_PRECISION": args.precision,
            "VTFPAR_MAX_BATCH_WAIT_MS": str(args.batch_wait_ms),
            "VTFPAR_MAX_QUEUE": str(max(64, 2 * args.concurrency)),
            "VTFPAR_MAX_CONCURRENT_REQUESTS": str(max(128, 2 * args.concurrency)),
        }
        if args.decode_workers:
            env["VTFPAR_DECODE_WORKERS"] = str(args.decode_workers)
        if args.torch_threads:
            env["VTFPAR_TORCH_THREADS"] = str(args.torch_threads)
        batched = serve_and_load({**env, "VTFPAR_MAX_BATCH_CLIPS": str(args.max_batch)}, clips, args)
        unbatched = serve_and_load({**env, "VTFPAR_MAX_BATCH_CLIPS": "1"}, clips, args)
    # Measured after the servers stopped, so the bare model has the machine to itself.
    bare_batched = measure(runner, args.max_batch, seconds=2.0)
    bare_single = measure(runner, 1, seconds=2.0)

    print(
        f"preset {runner.model.config.name}, device {runner.device}, precision {runner.precision}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(header)
    report(f"batching on ({args.max_batch})", batched)
    report("batching off", unbatched)
    print(f"bare model: {bare_batched:.1f} clips/s at batch {args.max_batch}, {bare_single:.1f} clips/s at batch 1")
    print(f"served / bare, batching on : {batched.clips_per_s / bare_batched:.3f}  (vs bare batch {args.max_batch})")
    print(f"served / bare, batching off: {unbatched.clips_per_s / bare_single:.3f}  (vs bare batch 1)")
    print(
        f"batching gain (on / off)   : {batched.clips_per_s / unbatched.clips_per_s:.2f}x clips/s, "
        f"p95 {batched.percentile_ms(95) / unbatched.percentile_ms(95):.2f}x"
    )


if __name__ == "__main__":
    main()
