"""What the opt-in CLIP image embedding (``clip_image_embedding``) costs the forward pass: the tower's blocks after
its last tap, ``ln_post`` and ``proj``, run on every frame.

    python -m benchmarks.clip_image --preset tiny --clips 8 --repeats 30
    python -m benchmarks.clip_image --preset vtfpar-b16 --flops-only

For a preset, the same random weights are built twice (without and with the opt-in); a batch of ``--clips`` clips
goes through ``forward_with_embedding`` (what the service runs without the opt-in) and ``forward_with_embeddings``
(with it): torch's FLOP counter for each, and, unless ``--flops-only``, the median CPU time of ``--repeats`` passes
(interleaved).
Prints the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from model import create_model, get_config, load_schema


def flops(run, frames: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        run(frames)
    return counter.get_total_flops()


def median_seconds(runs: dict, frames: torch.Tensor, repeats: int) -> dict:
    """Each run's median time, the runs interleaved so that a shared machine's load falls on both alike."""
    times: dict = {key: [] for key in runs}
    with torch.inference_mode():
        for run in runs.values():
            run(frames)  # warm-up
        for _ in range(repeats):
            for key, run in runs.items():
                start = time.perf_counter()
                run(frames)
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--flops-only", action="store_true")
    args = parser.parse_args()
    schema = load_schema("mars")
    models = {}
    for opted_in in (False, True):
        torch.manual_seed(0)
        # Random weights (clip_weights None): nothing is downloaded, and the cost does not depend on the values.
        config = get_config(args.preset, clip_weights=None, clip_image_embedding=opted_in)
        models[opted_in] = create_model(config, schema).eval()
    config = models[False].config
    frames = torch.randn(args.clips, config.frames, 3, config.image_size, config.image_size)
    runs = {False: models[False].forward_with_embedding, True: models[True].forward_with_embeddings}
    counted = {opted_in: flops(run, frames) for opted_in, run in runs.items()}
    blocks = len(models[True].backbone.visual.transformer.resblocks)
    print(f"{args.preset}: taps {list(config.taps)} of {blocks} blocks, {args.clips} clips of {config.frames} frames")
    print(f"  FLOPs without: {counted[False] / 1e9:.3f} G, with: {counted[True] / 1e9:.3f} G, "
          f"ratio {counted[True] / counted[False]:.3f}")  # fmt: skip
    if not args.flops_only:
        timed = median_seconds(runs, frames, args.repeats)
        print(f"  CPU median without: {timed[False] * 1e3:.2f} ms, with: {timed[True] * 1e3:.2f} ms, "
              f"ratio {timed[True] / timed[False]:.3f} (torch threads {torch.get_num_threads()})")  # fmt: skip


if __name__ == "__main__":
    main()
