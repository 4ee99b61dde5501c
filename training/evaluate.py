"""``python -m training.evaluate`` / ``vtfpar-evaluate``: metrics of a checkpoint on a dataset split.

Prints a readable report (VTFPAR++ protocol, mA, instance metrics, per-group and per-attribute tables) and, with
``--json``, writes all numbers. Frames are sampled as the checkpoint's serving does (``segment_middle``) unless
``--sampling`` says otherwise; ``--passes N`` repeats a stochastic sampling (default then: the reference's
``random_subset``) and reports the mean and standard deviation over passes. ``--sampling single_frame`` feeds the
middle frame T times: what the model gets out of one frame (an ablation of the temporal path).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from model import CheckpointError, load_checkpoint

from .dataset import SAMPLING_MODES, ClipDataset
from .distributed import Context, DeviceError, choose_device
from .engine import PRECISIONS, predict
from .metrics import compute_metrics, format_report, headline
from .records import DatasetError
from .sources import DATA_FORMATS, detect_format, load_dataset


def average(results: list) -> tuple:
    """Mean and standard deviation, leaf by leaf, of equally shaped metric dicts."""
    first = results[0]
    if isinstance(first, dict):
        pairs = {key: average([r[key] for r in results]) for key in first}
        return {k: m for k, (m, _) in pairs.items()}, {k: s for k, (_, s) in pairs.items()}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.mean(results)), float(np.std(results))
    return first, None


def evaluate(
    checkpoint: str,
    data: str,
    data_format: str = "auto",
    split: str = "test",
    passes: int = 1,
    sampling: str | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    backbone_weights: str | None = None,
) -> dict:
    ctx = Context(rank=0, world_size=1, device=choose_device(device))
    loaded = load_checkpoint(checkpoint, device=ctx.device, backbone_weights=backbone_weights)
    model = loaded.model
    if data_format == "auto":
        data_format = detect_format(Path(data))
    # A manifest is read with the checkpoint's schema; the MARS and Duke layouts bring their own.
    dataset_source = load_dataset(data, data_format, model.schema if data_format == "manifest" else None)
    if dataset_source.schema.names != model.schema.names:
        raise DatasetError(
            f"{dataset_source.description} is labelled with schema {dataset_source.schema.name!r}, "
            f"but the checkpoint predicts {model.schema.name!r} ({len(model.schema)} attributes)"
        )
    tracklets = dataset_source.split(split)
    if not tracklets:
        raise DatasetError(f"{dataset_source.summary()}: the {split} split is empty")
    sampling = sampling or ("segment_middle" if passes == 1 else "random_subset")
    clips = ClipDataset(tracklets, model.preprocess, model.config.frames, sampling, None, seed)
    runs = []
    for round_ in range(passes):
        logits, labels = predict(
            model, clips, ctx, batch_size, workers, precision, round_=round_, desc=f"pass {round_ + 1}/{passes}"
        )
        runs.append(compute_metrics(1 / (1 + np.exp(-logits)), labels, model.schema, model.thresholds))
    mean, std = average(runs)
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.digest,
        "data": dataset_source.description,
        "split": split,
        "sampling": sampling,
        "frames": model.config.frames,
        "passes": passes,
        "metrics": mean,
        "std": std if passes > 1 else None,
        "per_pass": [headline(r) for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar-evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by training")
    parser.add_argument("--data", required=True, help="dataset folder or manifest (as for training)")
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--passes", type=int, default=1, help="repeat stochastic frame sampling N times")
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        help="frame sampling (default: segment_middle; random_subset when --passes > 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic sampling")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--backbone-weights", help="where the frozen CLIP weights come from, if not embedded")
    parser.add_argument("--json", dest="json_out", help="write the metrics JSON here")
    args = parser.parse_args(argv)
    if args.passes < 1 or args.batch_size < 1 or args.seed < 0:
        parser.error("--passes and --batch-size must be >= 1, --seed >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate(
            args.checkpoint,
            args.data,
            args.data_format,
            args.split,
            args.passes,
            args.sampling,
            args.batch_size,
            args.workers,
            args.device,
            args.precision,
            args.seed,
            args.backbone_weights,
        )
    except (DatasetError, CheckpointError, DeviceError) as exc:
        parser.error(str(exc))
    print(
        f"{result['checkpoint']} on {result['data']} ({result['split']} split, {result['sampling']} sampling, "
        f"{result['frames']} frames, {result['passes']} pass(es))"
    )
    print(format_report(result["metrics"]))
    if result["std"]:
        spread = headline(result["std"])
        print("std over passes: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in spread.items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
