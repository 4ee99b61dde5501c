"""``python -m training.make_demo --out PATH``: the service's built-in demo checkpoint, reproducibly.

Renders synthetic pedestrian tracklets (uniform class priors, so every attribute is seen often) and side-tunes
the ``vtfpar-demo`` preset on them with the CPU recipe of docs/training.md ("On a CPU"). As any ``vtfpar train`` run,
a validation split (10 % of the training identities) picks the best epoch, and ``best.safetensors`` is
calibrated on it (per-attribute thresholds and temperatures) and scored on the held-out identities of the test
split. The checkpoint is written to ``--out`` with those scores, the training-prior baseline and a one-frame
ablation in its provenance. Where the service keeps its demo model is the service's business: pass that path
(see the README) as ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import load_checkpoint, save_checkpoint

from .data.sources import load_dataset
from .evaluate import evaluate
from .loss import positive_ratios
from .metrics import compute_metrics, headline
from .synthetic.tracklets import generate
from .train import BEST
from .train import main as train_main

DATA: dict[str, Any] = {
    "tracklets": 2400,
    "seed": 7,
    "frames_per_tracklet": (8, 8),
    "size": (64, 32),
    "priors": "uniform",
    "test_fraction": 0.25,
}


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        *("--data", str(data), "--out", str(out), "--preset", "vtfpar-demo"),
        *("--epochs", str(epochs), "--warmup-epochs", "1", "--eval-every", "1"),
        *("--batch-size", "8", "--lr", "1e-3", "--aug-per-clip", "--seed", "7"),
        *("--calibrate-objective", "f1", "--calibrate-temperature"),
    ]


def make_demo(out: Path, epochs: int, workdir: Path, command: str, model_card: str | None) -> dict:
    data = generate(workdir / "data", **DATA)
    run = workdir / "run"
    if train_main(train_args(data, run, epochs)) != 0:
        raise RuntimeError("training the demo model failed")
    dataset = load_dataset(data)
    train_labels = np.stack([t.labels for t in dataset.train])
    test_labels = np.stack([t.labels for t in dataset.test])
    priors = np.broadcast_to(positive_ratios(train_labels).numpy(), test_labels.shape)
    held_out = evaluate(str(run / BEST), str(data))
    single_frame = evaluate(str(run / BEST), str(data), sampling="single_frame")
    loaded = load_checkpoint(run / BEST)
    provenance = {
        **loaded.metadata["provenance"],
        "demo": True,
        "command": command,
        "data": {"generator": "training.synthetic", **DATA, "description": loaded.metadata["provenance"]["data"]},
        "held_out_group_mA": {name: round(g["mA"], 4) for name, g in held_out["metrics"]["groups"].items()},
        "training_prior_baseline": headline(compute_metrics(priors, test_labels, dataset.schema)),
        "motion_mA_single_frame": round(single_frame["metrics"]["groups"]["motion"]["mA"], 4),
    }
    if model_card:
        provenance["model_card"] = model_card
    save_checkpoint(loaded.model, out, provenance=provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar make-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the synthetic data (DIR/data) and the run (DIR/run) here (default: a temp dir)",
    )
    parser.add_argument("--model-card", help="where the demo's card is published (URL or path); shown by /info")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "training.make_demo", *(argv if argv is not None else sys.argv[1:])])
    torch.manual_seed(7)
    if args.workdir:
        provenance = make_demo(args.out, args.epochs, args.workdir, command, args.model_card)
    else:
        with tempfile.TemporaryDirectory(prefix="vtfpar-demo-") as workdir:
            provenance = make_demo(args.out, args.epochs, Path(workdir), command, args.model_card)
    tested, prior = provenance["test_metrics"], provenance["training_prior_baseline"]
    print(f"wrote {args.out}")
    for key in ("protocol_accuracy", "protocol_f1", "mA"):
        print(
            f"held-out {key}: {tested['calibrated'][key]:.3f} calibrated, {tested['default_threshold'][key]:.3f} "
            f"at the default threshold (training priors: {prior[key]:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
