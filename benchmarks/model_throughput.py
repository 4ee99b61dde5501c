"""Bare-model throughput: clips/s of the forward pass at batch sizes 1..N for one preset.

No HTTP and no decoding, so this is the ceiling the service's /predict throughput is compared with. The forward
pass is the service's own (``app.inference.ModelRunner.predict``: inference mode, autocast on CUDA, sigmoid and
the copy back to the host). The backbone is random unless --checkpoint is given: speed does not depend on the
weights, and nothing is downloaded.

    python benchmarks/model_throughput.py --preset tiny                                   # CPU, ~10 s
    python benchmarks/model_throughput.py --preset vtfpar-b16 --device cuda --max-batch 32
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Run from a checkout: the repository root (with app/ and model/) comes first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.inference import (  # noqa: E402
    ModelRunner,
    ServedModel,
    resolve_device,
    resolve_service_precision,
    warmup_batch_sizes,
)
from model import create_model, get_config, load_checkpoint, load_schema  # noqa: E402


def build_runner(
    preset: str, device: str = "auto", precision: str = "auto", checkpoint: str | None = None, schema: str = "mars"
) -> ModelRunner:
    torch_device = resolve_device(device)
    if checkpoint:
        model = load_checkpoint(checkpoint, device=torch_device).model
    else:
        torch.manual_seed(0)
        model = create_model(get_config(preset, clip_weights=None), load_schema(schema), device=torch_device)
    served = ServedModel(
        name=model.config.name, digest="random", schema=model.schema.name, demo=False, checkpoint=checkpoint or ""
    )
    return ModelRunner(model, served, torch_device, resolve_service_precision(precision, torch_device))


def measure(runner: ModelRunner, batch: int, seconds: float, min_iterations: int = 3) -> float:
    """Clips per second of back-to-back forward passes at one batch size (after two warm-up passes)."""
    # MARS-sized crops, prepared once as the service's decode threads prepare them (on CUDA, the batch-wise
    # padding and resizing then happens inside predict, as in the service).
    frames = [np.zeros((256, 128, 3), dtype=np.uint8)] * runner.frames_per_clip
    clips = [runner.prepare(frames) for _ in range(batch)]
    for _ in range(2):
        runner.predict(clips)
    iterations, start = 0, time.perf_counter()
    while iterations < min_iterations or time.perf_counter() - start < seconds:
        runner.predict(clips)
        iterations += 1
    return iterations * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", help="measure this checkpoint instead of a random model of --preset")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--max-batch", type=int, default=16, help="batch sizes 1, 2, 4, ... up to this")
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per batch size")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runner = build_runner(args.preset, args.device, args.precision, args.checkpoint)
    print(
        f"bare model forward: preset {runner.model.config.name}, {runner.frames_per_clip} frames of "
        f"{runner.model.config.image_size}px per clip, device {runner.device}, precision {runner.precision}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'batch':>5} {'clips/s':>10} {'ms/batch':>10} {'vs batch 1':>10}")
    single = None
    for batch in warmup_batch_sizes(args.max_batch):
        rate = measure(runner, batch, args.seconds)
        single = single or rate
        print(f"{batch:>5} {rate:>10.1f} {1000 * batch / rate:>10.2f} {rate / single:>9.2f}x")


if __name__ == "__main__":
    main()
