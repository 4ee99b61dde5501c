"""HTTP load for POST /predict: C concurrent clients posting synthetic H.264 clips, with latency percentiles and the
mean batch size the server ran (from its /metrics). ``benchmarks.suite`` uses it against servers it starts; on its
own it loads a server you started:

    python -m benchmarks.load --url http://127.0.0.1:8000 --concurrency 64 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .media import encode


def synthetic_clips(count: int, seconds: float, width: int, height: int, fps: int = 25) -> list[bytes]:
    """Distinct H.264 mp4 clips (x264's defaults: one GOP, B-frames): a textured block drifting over a noisy
    background, so that they compress like footage rather than like a flat colour."""
    clips = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        background = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        images = []
        for i in range(round(seconds * fps)):
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

    def summary(self) -> dict:
        return {
            "clips_per_s": self.clips_per_s,
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "mean_batch": self.mean_batch,
            "answered": len(self.latencies),
            "errors": {str(status): count for status, count in self.errors.items()},
        }


def post_clip(client: httpx.AsyncClient, clip: bytes):
    return client.post("/predict", files={"video": ("clip.mp4", clip)})


async def generate_load(
    url: str, clips: list[bytes], concurrency: int, seconds: float = 0.0, requests: int | None = None
) -> LoadResult:
    """Each of ``concurrency`` clients posts clips back to back (after one warm-up round) for ``seconds``, or until
    ``requests`` have been sent in all."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        await asyncio.gather(*(post_clip(client, clips[i % len(clips)]) for i in range(concurrency)))
        batches_before = await batch_totals(client)
        result, counter = LoadResult(seconds=seconds), iter(range(requests if requests is not None else 10**9))
        deadline = time.perf_counter() + seconds if requests is None else float("inf")

        async def worker() -> None:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                start = time.perf_counter()
                try:
                    status = (await post_clip(client, clips[i % len(clips)])).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                if status == 200:
                    result.latencies.append(time.perf_counter() - start)
                else:
                    result.errors[status] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
        batches, clips_run = (a - b for a, b in zip(await batch_totals(client), batches_before, strict=True))
        result.mean_batch = clips_run / batches if batches else float("nan")
        return result


async def batch_totals(client: httpx.AsyncClient) -> tuple[float, float]:
    """(forward passes, clips run) so far, from the server's vtfpar_batch_size_clips histogram."""
    text = (await client.get("/metrics")).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "vtfpar_batch_size_clips")
    values = {s.name: s.value for s in family.samples}
    return values["vtfpar_batch_size_clips_count"], values["vtfpar_batch_size_clips_sum"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the server to load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=16, help="distinct synthetic clips")
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--size", default="128x256", help="WIDTHxHEIGHT of the clips (MARS crops: 128x256)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    clips = synthetic_clips(args.clips, args.clip_seconds, width, height)
    result = asyncio.run(generate_load(args.url, clips, args.concurrency, args.seconds))
    print({"concurrency": args.concurrency, **result.summary()})


if __name__ == "__main__":
    main()
