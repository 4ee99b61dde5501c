"""``python -m training.make_demo``: the service's built-in demo checkpoint, reproducibly.

Renders synthetic pedestrian tracklets (uniform class priors, so every attribute is seen often), side-tunes the
``vtfpar-demo`` preset on them with the settings the CPU "it learns" test uses, evaluates the last epoch on the
held-out identities, and writes the checkpoint with those metrics (and the training-prior baseline) in its
provenance. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from model import load_checkpoint, save_checkpoint

from .evaluate import evaluate
from .loss import positive_ratios
from .metrics import compute_metrics, headline
from .sources import load_dataset
from .synthetic import generate
from .train import main as train_main

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "app" / "assets" / "demo.safetensors"
DATA = {
    "tracklets": 2400,
    "seed": 7,
    "frames_per_tracklet": (8, 8),
    "size": (64, 32),
    "priors": "uniform",
    "test_fraction": 0.25,
}


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "vtfpar-demo",
        "--epochs",
        str(epochs),
        "--warmup-epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--eval-every",
        str(epochs),
        "--aug-per-clip",
        "--seed",
        "7",
    ]


def make_demo(out: Path, epochs: int, workdir: Path) -> dict:
    data = generate(workdir / "data", **DATA)
    run = workdir / "run"
    if train_main(train_args(data, run, epochs)) != 0:
        raise RuntimeError("training the demo model failed")
    dataset = load_dataset(data)
    train_labels = np.stack([t.labels for t in dataset.train])
    test_labels = np.stack([t.labels for t in dataset.test])
    priors = np.broadcast_to(positive_ratios(train_labels).numpy(), test_labels.shape)
    baseline = headline(compute_metrics(priors, test_labels, dataset.schema))
    held_out = evaluate(str(run / "last.safetensors"), str(data))
    single_frame = evaluate(str(run / "last.safetensors"), str(data), sampling="single_frame")
    loaded = load_checkpoint(run / "last.safetensors")
    provenance = {
        **loaded.metadata["provenance"],
        "demo": True,
        "command": "python -m training.make_demo",
        "data": {
            "generator": "training.synthetic",
            **DATA,
            "train_tracklets": len(dataset.train),
            "held_out_tracklets": len(dataset.test),
        },
        "held_out_metrics": headline(held_out["metrics"]),
        "held_out_group_mA": {name: round(g["mA"], 4) for name, g in held_out["metrics"]["groups"].items()},
        "training_prior_baseline": baseline,
        "motion_mA_single_frame": round(single_frame["metrics"]["groups"]["motion"]["mA"], 4),
    }
    save_checkpoint(loaded.model, out, provenance=provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.make_demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"checkpoint path (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=24)
    args = parser.parse_args(argv)
    torch.manual_seed(7)
    with tempfile.TemporaryDirectory(prefix="vtfpar-demo-") as workdir:
        provenance = make_demo(args.out, args.epochs, Path(workdir))
    model, prior = provenance["held_out_metrics"], provenance["training_prior_baseline"]
    print(f"wrote {args.out}")
    for key in ("protocol_accuracy", "protocol_f1", "mA"):
        print(f"held-out {key}: {model[key]:.3f} (training priors: {prior[key]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
