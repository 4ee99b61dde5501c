"""Which appearance embedding: re-identification rank-1 and mAP of every candidate the forward pass has at hand.

The same protocol, data and split as ``vtfpar evaluate --reid`` (``training.reid``), one row per candidate vector,
all read from one forward pass of each clip (so each is free at serving). ``python -m training.reid_candidates
--checkpoint CKPT --data DIR`` prints the table that docs/search.md ("The embedding") quotes; the chosen one is
``VTFPAR._appearance``.

Parts (W the side width, A the attributes): the side nets' visual tokens before fusion, the fusion block's visual and
attribute (text) tokens after it, and the attribute logits. "centred" subtracts the fusion LayerNorm's bias (the
part every person shares); "standardised logits" are the logit BatchNorm's normalised values before its affine
(each attribute's logit in units of its training spread, centred on its training mean).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from torch import nn

from model import VTFPAR, CheckpointError, load_checkpoint
from model.precision import autocast, resolve_precision

from .data.dataset import ClipDataset
from .data.records import DatasetError, Tracklet
from .data.sources import DATA_FORMATS, load_dataset_for
from .distributed import DeviceError, choose_device
from .evaluate import split_tracklets
from .reid import camera_of, cross_camera_metrics

WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def unit(values: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(values, dim=-1)


@torch.no_grad()
def parts(model: VTFPAR, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """The candidate parts of one batch, each ``[B, D]``, from one forward pass."""
    attributes = len(model.schema)
    visual = model.forward_features(frames)
    fused = model._fused(visual)
    with torch.autocast(fused.device.type, enabled=False):
        logits = model._logits(fused)
    norm = model.logit_norm
    assert norm.running_mean is not None and norm.running_var is not None
    standard = (model.heads(fused[:, :attributes]) - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    temperatures = torch.tensor(model.temperatures or [1.0] * attributes, device=logits.device)
    centre = model.fusion_norm.bias
    fused_visual, fused_text = fused[:, attributes:], fused[:, :attributes]
    return {
        "the appearance embedding (VTFPAR._appearance)": model._appearance(fused),
        "side visual tokens' mean (before fusion)": visual.mean(dim=1),
        "side CLS token (before fusion)": visual[:, 0],
        "fused visual tokens' mean": fused_visual.mean(dim=1),
        "fused visual mean, centred": fused_visual.mean(dim=1) - centre,
        "fused visual CLS token": fused_visual[:, 0],
        "fused attribute tokens' mean": fused_text.mean(dim=1),
        "fused attribute tokens, flattened": fused_text.flatten(1),
        "fused attribute tokens, centred, flattened": (fused_text - centre).flatten(1),
        "fused visual patch tokens, flattened": fused_visual[:, 1:].flatten(1),
        "fused visual, 2 horizontal stripes": stripes(model, fused_visual, 2),
        "fused visual, 3 horizontal stripes": stripes(model, fused_visual, 3),
        "fused visual, 4 horizontal stripes": stripes(model, fused_visual, 4),
        "side visual, 2 horizontal stripes": stripes(model, visual, 2),
        "calibrated logits": logits / temperatures,
        "probabilities": torch.sigmoid(logits / temperatures),
        "standardised logits": standard,
    }


def stripes(model: VTFPAR, tokens: torch.Tensor, count: int) -> torch.Tensor:
    """The patch tokens' means over ``count`` horizontal stripes of the patch grid, each unit length, side by side."""
    rows, columns = model.backbone.grid
    grid = tokens[:, 1:].reshape(tokens.shape[0], rows, columns, -1).mean(dim=2)  # [B, rows, W]
    pooled = nn.functional.adaptive_avg_pool1d(grid.transpose(1, 2), count).transpose(1, 2)
    return unit(pooled).flatten(1)


def candidates(part: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The parts, and weighted concatenations of unit-length parts (the weight is the logits' share)."""
    rows = dict(part)
    for visual in (
        "fused visual tokens' mean",
        "fused visual, 2 horizontal stripes",
        "fused visual, 3 horizontal stripes",
        "fused visual, 4 horizontal stripes",
    ):
        for weight in WEIGHTS:
            rows[f"{visual} + {weight:g} x standardised logits"] = torch.cat(
                [unit(part[visual]), weight * unit(part["standardised logits"])], dim=1
            )
    return rows


def measure(model: VTFPAR, tracklets: list[Tracklet], device: torch.device, batch_size: int, precision: str) -> dict:
    model.eval()
    precision = resolve_precision(precision, device)
    clips = ClipDataset(tracklets, model.preprocess, model.config.frames, "segment_middle")
    collected: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(clips), batch_size):
        batch = torch.stack([clips[(0, i)][0] for i in range(start, min(start + batch_size, len(clips)))])
        with autocast(device, precision):
            rows = candidates(parts(model, batch.to(device)))
        for name, values in rows.items():
            collected.setdefault(name, []).append(values.float().cpu())
    identities = np.array([t.identity for t in tracklets])
    cameras = np.array([camera_of(t) for t in tracklets])
    return {
        name: {**cross_camera_metrics(torch.cat(v).numpy(), identities, cameras), "width": int(v[0].shape[1])}
        for name, v in collected.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reid_candidates", description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    try:
        device = choose_device(args.device)
        loaded = load_checkpoint(args.checkpoint, device=device)
        dataset = load_dataset_for(loaded.model, args.data, args.data_format)
        tracklets = split_tracklets(dataset, args.data, args.split, loaded.metadata.get("provenance") or {})
        rows = measure(loaded.model, tracklets, device, args.batch_size, args.precision)
    except (DatasetError, CheckpointError, DeviceError) as exc:
        parser.error(str(exc))
    print(f"{len(tracklets)} tracklets, {next(iter(rows.values()))['queries']} queries")
    print("| candidate | width | rank-1 | mAP |\n|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["mAP"]):
        print(f"| {name} | {row['width']} | {row['rank1']:.3f} | {row['mAP']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
