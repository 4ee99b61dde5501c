"""``python -m training.evaluate`` / ``vtfpar evaluate``: metrics of a checkpoint on a dataset split.

Prints a readable report (VTFPAR++ protocol, mA, instance metrics, one-of winners, calibration error, per-group
and per-attribute tables) and, with ``--json``, writes all numbers. Decisions are the checkpoint's: its
calibrated thresholds and temperatures when it has them; ``--uncalibrated`` scores the plain sigmoid at the
config's threshold (0.45) instead, the paper's protocol. Frames are sampled as the checkpoint's serving does
(``segment_middle``) unless ``--sampling`` says otherwise; ``--passes N`` repeats a stochastic sampling (default
then: the reference's ``random_subset``) and reports the mean and standard deviation over passes.
``--sampling single_frame`` feeds the middle frame T times: what the model gets out of one frame (an ablation of
the temporal path). ``--split validation`` is the validation split the checkpoint records. ``--reid`` adds the
re-identification protocol (``training.reid``): rank-1 and mAP of the appearance embedding, query and gallery from
different cameras, against attribute-logit and colour-histogram baselines and chance.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import VTFPAR, CheckpointError, LoadedCheckpoint, load_checkpoint

from .data.dataset import SAMPLING_MODES, ClipDataset
from .data.records import DatasetError, TrackletSet
from .data.sources import DATA_FORMATS, load_dataset_for
from .distributed import Context, DeviceError, choose_device
from .engine import PRECISIONS, predict
from .metrics import format_report, headline, score_logits
from .reid import format_report as format_reid
from .reid import reid_report
from .validation import rebuild_split

SPLITS = ("train", "validation", "test")


def average(results: list) -> tuple:
    """Mean and standard deviation, leaf by leaf, of equally shaped metric dicts."""
    first = results[0]
    if isinstance(first, dict):
        pairs = {key: average([r[key] for r in results]) for key in first}
        return {k: m for k, (m, _) in pairs.items()}, {k: s for k, (_, s) in pairs.items()}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.mean(results)), float(np.std(results))
    return first, None


def split_tracklets(dataset: TrackletSet, data: str, split: str, provenance: dict) -> list:
    if split != "validation":
        return dataset.split(split)
    # The validation split lies inside the training split of the data the checkpoint was trained on.
    if not provenance.get("validation") or (provenance.get("settings") or {}).get("data") != str(Path(data).resolve()):
        raise DatasetError(f"--split validation: the checkpoint records no validation split of {data}")
    return rebuild_split(provenance, data, dataset.train).validation


def describe_decisions(model: VTFPAR, *, calibrated: bool) -> str:
    """How ``model``'s probabilities become decisions, in words."""
    if calibrated and model.calibration:
        record = model.calibration
        tempered = ", with per-attribute temperatures" if model.temperatures is not None else ""
        split, objective = record["fit_on"]["split"], record["objective"]
        return f"thresholds calibrated on the {split} split (objective {objective}{tempered})"
    thresholds = model.thresholds if calibrated else [model.config.threshold]
    if len(set(thresholds)) == 1:
        return f"threshold {thresholds[0]:g} for every attribute"
    return "the checkpoint's per-attribute thresholds"


@dataclass
class Predictions:
    """A checkpoint's logits on one split of a dataset, one array per sampling pass."""

    loaded: LoadedCheckpoint
    dataset: TrackletSet
    split: str
    sampling: str
    logits: list[np.ndarray]
    labels: np.ndarray

    def result(self, *, calibrated: bool = True) -> dict:
        """Every metric, as ``vtfpar evaluate --json`` writes it."""
        model = self.loaded.model
        runs = [score_logits(logits, self.labels, model, calibrated=calibrated) for logits in self.logits]
        mean, std = (runs[0], None) if len(runs) == 1 else average(runs)
        return {
            "checkpoint": self.loaded.path,
            "checkpoint_sha256": self.loaded.digest,
            "data": self.dataset.description,
            "split": self.split,
            "sampling": self.sampling,
            "frames_per_clip": model.config.frames,
            "passes": len(self.logits),
            "calibrated": calibrated,
            "decisions": describe_decisions(model, calibrated=calibrated),
            "thresholds": [a["threshold"] for a in runs[0]["attributes"].values()],
            "temperatures": model.temperatures if calibrated else None,
            "metrics": mean,
            "std": std,
            "per_pass": [headline(r) for r in runs],
        }


def predict_split(
    checkpoint: str,
    data: str,
    *,
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
) -> Predictions:
    """Run ``checkpoint`` over one split of ``data``, ``passes`` times."""
    ctx = Context(rank=0, world_size=1, device=choose_device(device))
    loaded = load_checkpoint(checkpoint, device=ctx.device, backbone_weights=backbone_weights)
    model = loaded.model
    dataset = load_dataset_for(model, data, data_format)
    tracklets = split_tracklets(dataset, data, split, loaded.metadata.get("provenance") or {})
    if not tracklets:
        raise DatasetError(f"{dataset.summary()}: the {split} split is empty")
    sampling = sampling or ("segment_middle" if passes == 1 else "random_subset")
    clips = ClipDataset(tracklets, model.preprocess, model.config.frames, sampling, None, seed)
    logits = []
    for round_ in range(passes):
        pass_logits, labels = predict(
            model,
            clips,
            ctx,
            batch_size=batch_size,
            workers=workers,
            precision=precision,
            round_=round_,
            desc=f"pass {round_ + 1}/{passes}",
        )
        logits.append(pass_logits)
    return Predictions(loaded=loaded, dataset=dataset, split=split, sampling=sampling, logits=logits, labels=labels)


def evaluate(checkpoint: str, data: str, *, calibrated: bool = True, **options: Any) -> dict:
    """Every metric of ``checkpoint`` on ``data``; ``options`` are :func:`predict_split`'s."""
    return predict_split(checkpoint, data, **options).result(calibrated=calibrated)


def reid(
    checkpoint: str,
    data: str,
    *,
    data_format: str = "auto",
    split: str = "test",
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "auto",
    backbone_weights: str | None = None,
    **_: Any,
) -> dict:
    """``training.reid``'s report of ``checkpoint`` on one split of ``data``."""
    ctx = Context(rank=0, world_size=1, device=choose_device(device))
    loaded = load_checkpoint(checkpoint, device=ctx.device, backbone_weights=backbone_weights)
    dataset = load_dataset_for(loaded.model, data, data_format)
    tracklets = split_tracklets(dataset, data, split, loaded.metadata.get("provenance") or {})
    return reid_report(loaded.model, tracklets, ctx.device, batch_size=batch_size, precision=precision)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs a checkpoint over a dataset (evaluate, calibrate, report)."""
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--backbone-weights", help="where the frozen CLIP weights come from, if not embedded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by training")
    parser.add_argument("--data", required=True, help="dataset folder or manifest (as for training)")
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="auto")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="ignore the checkpoint's calibration: plain sigmoid, the config's threshold for every attribute",
    )
    parser.add_argument("--passes", type=int, default=1, help="repeat stochastic frame sampling N times")
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        help="frame sampling (default: segment_middle; random_subset when --passes > 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic sampling")
    parser.add_argument(
        "--reid", action="store_true", help="also re-identification rank-1/mAP across cameras (training.reid)"
    )
    add_run_options(parser)
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
            calibrated=not args.uncalibrated,
            data_format=args.data_format,
            split=args.split,
            passes=args.passes,
            sampling=args.sampling,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            precision=args.precision,
            seed=args.seed,
            backbone_weights=args.backbone_weights,
        )
    except (DatasetError, CheckpointError, DeviceError) as exc:
        parser.error(str(exc))
    print(
        f"{result['checkpoint']} on {result['data']} ({result['split']} split, {result['sampling']} sampling, "
        f"{result['frames_per_clip']} frames, {result['passes']} pass(es)); decisions: {result['decisions']}"
    )
    print(format_report(result["metrics"]))
    if result["std"]:
        spread = headline(result["std"])
        print("std over passes: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in spread.items()))
    if args.reid:
        options = dict(data_format=args.data_format, split=args.split, batch_size=args.batch_size)
        options.update(device=args.device, precision=args.precision, backbone_weights=args.backbone_weights)
        try:
            result["reid"] = reid(args.checkpoint, args.data, **options)
        except DatasetError as exc:
            parser.error(str(exc))
        print(format_reid(result["reid"]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
