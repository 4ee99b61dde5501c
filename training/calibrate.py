"""``python -m training.calibrate`` / ``vtfpar calibrate``: fit a checkpoint's decisions on its validation split.

Runs the checkpoint over the validation split it records (the identities ``vtfpar train`` held out of the
training split of the data it trained on; never the test split), fits per-attribute thresholds that maximise
``--objective`` (``f1`` or ``balanced_accuracy``) and, with ``--temperature``, per-attribute temperatures
(training/calibration.py), and writes them into the checkpoint's header together with what they were fit on
and the validation metrics before and after, expected calibration error included. The service then decides
with them. Calibrating again starts from the model's logits, so it replaces an earlier calibration rather than
stacking on it.

On other data, or for a checkpoint that records no validation split, ``--val-fraction`` (and ``--seed``) hold
out identities of the data's training split; that is only sound on data the model never trained on
(``--val-fraction 1`` uses the whole training split of such data).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from model import VTFPAR, CheckpointError, load_checkpoint, save_checkpoint

from .calibration import OBJECTIVES, fit_decisions
from .data.dataset import ClipDataset
from .data.records import DatasetError
from .data.sources import DATA_FORMATS, load_dataset_for
from .distributed import Context, DeviceError, choose_device
from .engine import predict
from .evaluate import add_run_options
from .metrics import headline, score_logits
from .validation import rebuild_split

VALIDATION_SAMPLING = "segment_middle"  # what the service feeds the model


def calibrate(
    model: VTFPAR, logits: np.ndarray, labels: np.ndarray, *, objective: str, temperature: bool, fit_on: dict
) -> dict:
    """Fit ``model``'s thresholds (and temperatures) on validation ``logits``/``labels`` and set them on the model;
    returns the record a checkpoint keeps under ``calibration``."""
    default = model.config.threshold
    fit = fit_decisions(logits, labels, objective=objective, temperature=temperature, default_threshold=default)
    before = score_logits(logits, labels, model, calibrated=False)
    model.thresholds, model.temperatures = fit.thresholds, fit.temperatures
    after = score_logits(logits, labels, model)
    model.calibration = {
        "objective": objective,
        "temperature": temperature,
        "default_threshold": default,
        "kept_default": [model.schema.names[j] for j in fit.kept_default],
        "fit_on": fit_on,
        "validation": {"before": headline(before), "after": headline(after)},
    }
    return model.calibration


def describe(record: dict) -> str:
    """Before/after lines for a calibration record."""
    before, after = record["validation"]["before"], record["validation"]["after"]
    lines = [f"calibrated on {record['fit_on']['tracklets']} validation tracklets (objective {record['objective']})"]
    for key in ("protocol_f1", "mA", "winner_accuracy", "ece"):
        lines.append(f"  {key:<16} {before[key]:.4f} at the default threshold -> {after[key]:.4f} calibrated")
    kept = record["kept_default"]
    if kept:
        shown = ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else "")
        lines.append(f"  {len(kept)} attribute(s) kept the default, having one class only on validation: {shown}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtfpar calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by training")
    parser.add_argument("--data", required=True, help="the dataset it was trained on (folder or manifest)")
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    parser.add_argument("--out", help="write the calibrated checkpoint here (default: replace --checkpoint)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="f1", help="what each threshold maximises")
    parser.add_argument("--temperature", action="store_true", help="also fit a temperature per attribute")
    parser.add_argument(
        "--val-fraction",
        type=float,
        help="only for a checkpoint that records no validation split: share of the training split's identities",
    )
    parser.add_argument("--seed", type=int, help="with --val-fraction: the split's seed (default 0)")
    parser.add_argument("--model-card", help="where this model's card is published (URL or path); shown by /info")
    add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> dict:
    ctx = Context(rank=0, world_size=1, device=choose_device(args.device))
    loaded = load_checkpoint(args.checkpoint, device=ctx.device, backbone_weights=args.backbone_weights)
    model, provenance = loaded.model, dict(loaded.metadata.get("provenance") or {})
    dataset = load_dataset_for(model, args.data, args.data_format)
    split = rebuild_split(provenance, args.data, dataset.train, args.val_fraction, args.seed)
    if not split.validation:
        raise DatasetError(f"{dataset.summary()}: the validation split is empty")
    clips = ClipDataset(split.validation, model.preprocess, model.config.frames, VALIDATION_SAMPLING)
    logits, labels = predict(
        model, clips, ctx, batch_size=args.batch_size, workers=args.workers, precision=args.precision
    )
    fit_on = {
        "data": dataset.description,
        "split": "validation",
        **split.record(),
        "sampling": VALIDATION_SAMPLING,
        "checkpoint_sha256": loaded.digest,
    }
    record = calibrate(model, logits, labels, objective=args.objective, temperature=args.temperature, fit_on=fit_on)
    if args.model_card:
        provenance["model_card"] = args.model_card
    out = args.out or args.checkpoint
    save_checkpoint(model, out, provenance=provenance, embed_backbone=loaded.metadata["backbone"]["embedded"])
    print(describe(record))
    print(f"wrote {out}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.val_fraction is not None and not 0 < args.val_fraction <= 1):
        parser.error("--batch-size must be >= 1 and --val-fraction in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args)
    except (DatasetError, CheckpointError, DeviceError) as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
