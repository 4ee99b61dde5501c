"""``vtfpar summary``: parameter and FLOP counts of a preset, offline (random backbone)."""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .backbone import BackboneError
from .config import ConfigError, get_config, list_presets
from .network import VTFPAR, create_model
from .schema import SchemaError, load_schema


def count_flops(model: VTFPAR, frames: torch.Tensor) -> dict[str, float]:
    """FLOPs of one forward pass, in total and per top-level module (a multiply-add counts as 2)."""
    attention = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    # The fused eval-mode attention kernels are opaque to the counter; the math path runs the same
    # projections and products as ops it counts (CLIP's attention dropout is 0, so outputs are unchanged).
    for module in attention:
        module.training = True
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, depth=1) as counter, torch.no_grad():
            model(frames)
    finally:
        for module in attention:
            module.training = False
    per_module = counter.get_flop_counts()
    breakdown = {name.split(".", 1)[1]: sum(ops.values()) for name, ops in per_module.items() if name.count(".") == 1}
    return {"total": counter.get_total_flops(), **breakdown}


def summarize(preset: str, attributes: str = "mars", frames: int | None = None) -> dict:
    overrides: dict[str, object] = {"clip_weights": None}
    if frames is not None:
        overrides["frames"] = frames
    config = get_config(preset, **overrides)
    schema = load_schema(attributes)
    model = create_model(config, schema).eval()
    trainable = sum(p.numel() for p in model.trainable_parameters())
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    clip = torch.zeros(1, config.frames, 3, config.image_size, config.image_size)
    flops = count_flops(model, clip)
    return {
        "preset": config.name,
        "clip_arch": config.clip_arch,
        "attributes": schema.name,
        "num_attributes": len(schema),
        "frames": config.frames,
        "taps": list(config.taps),
        "image_size": config.image_size,
        "side_width": config.side_width,
        "trainable_params": trainable,
        "frozen_params": frozen,
        "gflops_per_clip": round(flops.pop("total") / 1e9, 3),
        "gflops_by_module": {name: round(value / 1e9, 3) for name, value in flops.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vtfpar summary", description=__doc__)
    parser.add_argument("--preset", required=True, help=f"one of {list_presets()} or a preset JSON file")
    parser.add_argument("--attributes", default="mars", help="mars, mars-v1, duke or a schema JSON file")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (T); default: the preset's")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        print(json.dumps(summarize(args.preset, args.attributes, args.frames), indent=2))
    except (ConfigError, SchemaError, BackboneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
