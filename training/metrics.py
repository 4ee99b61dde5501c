"""Evaluation metrics (docs/method.md §4.1 and §4.2) with per-group and per-attribute tables.

- **VTFPAR++ protocol** (what the paper reports): positive iff p > threshold (0.45). Per group, TP/TN/FP/FN are
  summed over all (sample, column) pairs of the group's columns; Accuracy/Precision/Recall/F1 of each group are
  then averaged over groups, unweighted. One-hot groups are thresholded column by column, so predicting all
  zeros on a 9-way group still scores accuracy 8/9.
- **Label-based mA**: mean over columns of (TPR + TNR) / 2.
- **Instance-based** Accuracy (|Y∩Ŷ| / |Y∪Ŷ|), Precision, Recall and F1 per sample over all columns, averaged
  over samples.
- **One-of groups, decided by their winner** (the most probable class, as the service answers): top-1 accuracy
  and the confusion matrix (rows: true class, columns: winner).
- **Reliability**: probabilities pooled over all (sample, attribute) pairs in ``RELIABILITY_BINS`` equal-width
  bins; per bin the mean probability and the share of positives; the expected calibration error (ECE) is the
  count-weighted mean gap between the two, pooled and per attribute.

Decisions come from ``model.decisions`` (the rule the service uses). Denominators get eps = 1e-20 as in the
reference, so an empty denominator gives 0.
"""

from __future__ import annotations

import numpy as np
import torch

from model import VTFPAR, AttributeSchema
from model.decisions import one_of_winners, positives, probabilities

EPS = 1e-20
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1")
RELIABILITY_BINS = 10


def _scores(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    precision = tp / (tp + fp + EPS)
    recall = tp / (tp + fn + EPS)
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn + EPS),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall + EPS),
        "mA": (tp / (tp + fn + EPS) + tn / (tn + fp + EPS)) / 2,
    }


def reliability(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Reliability bins and ECE of probabilities against 0/1 labels (any shape, pooled)."""
    probs, labels = np.ravel(probs), np.ravel(labels).astype(np.float64)
    bins = np.minimum((probs * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    count = np.bincount(bins, minlength=RELIABILITY_BINS)
    mean_probability = np.bincount(bins, probs, RELIABILITY_BINS) / np.maximum(count, 1)
    positive_rate = np.bincount(bins, labels, RELIABILITY_BINS) / np.maximum(count, 1)
    return {
        "ece": float(np.sum(count * np.abs(mean_probability - positive_rate)) / max(len(probs), 1)),
        "count": count.tolist(),
        "mean_probability": mean_probability.tolist(),
        "positive_rate": positive_rate.tolist(),
    }


def _winner_scores(winners: np.ndarray, labels: np.ndarray, columns: list[int]) -> dict:
    """Top-1 accuracy and confusion matrix of a one-of group over the rows labelled with exactly one class."""
    group_labels = labels[:, columns]
    labelled = group_labels.sum(axis=1) == 1
    true = np.argmax(group_labels[labelled], axis=1)
    class_of_column = np.zeros(max(columns) + 1, dtype=np.int64)
    class_of_column[columns] = np.arange(len(columns))
    predicted = class_of_column[winners[labelled]]
    confusion = np.zeros((len(columns), len(columns)), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    return {
        "winner_accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "confusion": confusion.tolist(),
    }


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, schema: AttributeSchema, thresholds: float | list[float] | np.ndarray = 0.45
) -> dict:
    """All metrics for sigmoid outputs ``probs [N, A]`` against 0/1 ``labels [N, A]``, as a JSON-ready dict."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.shape != labels.shape or probs.ndim != 2 or probs.shape[1] != len(schema):
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be [N, {len(schema)}]")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(schema),))
    predicted, actual = positives(probs, thresholds), labels == 1
    tp = (predicted & actual).sum(axis=0).astype(np.float64)
    fp = (predicted & ~actual).sum(axis=0).astype(np.float64)
    tn = (~predicted & ~actual).sum(axis=0).astype(np.float64)
    fn = (~predicted & actual).sum(axis=0).astype(np.float64)

    per_column = _scores(tp, fp, tn, fn)
    attributes = {
        name: {
            "group": schema.attributes[j].group,
            "positives": int(tp[j] + fn[j]),
            "tp": int(tp[j]),
            "fp": int(fp[j]),
            "tn": int(tn[j]),
            "fn": int(fn[j]),
            "threshold": float(thresholds[j]),
            **{key: float(values[j]) for key, values in per_column.items()},
            "ece": reliability(probs[:, j], labels[:, j])["ece"],
        }
        for j, name in enumerate(schema.names)
    }
    winners = one_of_winners(probs, schema)
    groups = {}
    for group in schema.groups:
        columns = list(group.columns)
        scores = _scores(*(counts[columns].sum() for counts in (tp, fp, tn, fn)))
        groups[group.name] = {
            "kind": group.kind,
            **{key: float(scores[key]) for key in SUMMARY_KEYS},
            "mA": float(per_column["mA"][columns].mean()),
        }
        if group.name in winners:
            groups[group.name].update(_winner_scores(winners[group.name], labels, columns))

    intersection = (predicted & actual).sum(axis=1)
    union = (predicted | actual).sum(axis=1)
    instance_precision = intersection / (predicted.sum(axis=1) + EPS)
    instance_recall = intersection / (actual.sum(axis=1) + EPS)
    instance_f1 = 2 * instance_precision * instance_recall / (instance_precision + instance_recall + EPS)
    return {
        "num_samples": int(len(labels)),
        "protocol": {key: float(np.mean([g[key] for g in groups.values()])) for key in SUMMARY_KEYS},
        "mA": float(per_column["mA"].mean()),
        "instance": {
            "accuracy": float(np.mean(intersection / (union + EPS))),
            "precision": float(instance_precision.mean()),
            "recall": float(instance_recall.mean()),
            "f1": float(instance_f1.mean()),
        },
        "reliability": reliability(probs, labels),
        "groups": groups,
        "attributes": attributes,
    }


def score_logits(logits: np.ndarray, labels: np.ndarray, model: VTFPAR, *, calibrated: bool = True) -> dict:
    """Metrics of ``model``'s ``logits [N, A]`` under its decisions: its thresholds and temperatures when
    ``calibrated``, else the plain sigmoid and the config's threshold (0.45) for every attribute (the paper's)."""
    temperatures = model.temperatures if calibrated else None
    thresholds = model.thresholds if calibrated else [model.config.threshold] * len(model.schema)
    probs = probabilities(torch.from_numpy(np.asarray(logits)), temperatures).numpy()
    return compute_metrics(probs, labels, model.schema, thresholds)


def winner_accuracy(metrics: dict) -> float:
    """Top-1 accuracy of the one-of groups' winners, averaged over those groups (0 when there are none)."""
    scores = [g["winner_accuracy"] for g in metrics["groups"].values() if "winner_accuracy" in g]
    return float(np.mean(scores)) if scores else 0.0


def headline(metrics: dict) -> dict[str, float]:
    """The numbers worth a log line: protocol Acc/Prec/Rec/F1, mA, instance F1, one-of winner accuracy and ECE."""
    return {
        **{f"protocol_{k}": v for k, v in metrics["protocol"].items()},
        "mA": metrics["mA"],
        "instance_f1": metrics["instance"]["f1"],
        "winner_accuracy": winner_accuracy(metrics),
        "ece": metrics["reliability"]["ece"],
    }


def format_report(metrics: dict) -> str:
    """A readable summary, a per-group table and a per-attribute table (percentages)."""
    protocol, instance = metrics["protocol"], metrics["instance"]
    lines = [
        f"{metrics['num_samples']:.0f} tracklets",
        "VTFPAR++ protocol (mean over groups): " + "  ".join(f"{k} {100 * protocol[k]:.2f}" for k in SUMMARY_KEYS),
        f"label-based mA {100 * metrics['mA']:.2f}   instance-based: "
        + "  ".join(f"{k} {100 * instance[k]:.2f}" for k in SUMMARY_KEYS),
        f"one-of winners: top-1 accuracy {100 * winner_accuracy(metrics):.2f} (mean over groups)   "
        f"expected calibration error {100 * metrics['reliability']['ece']:.2f}",
        "",
        f"{'group':<16} {'kind':<7} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'mA':>6} {'top-1':>6}",
    ]
    for name, g in metrics["groups"].items():
        top1 = f" {100 * g['winner_accuracy']:6.2f}" if "winner_accuracy" in g else ""
        scores = " ".join(f"{100 * g[k]:6.2f}" for k in (*SUMMARY_KEYS, "mA"))
        lines.append(f"{name:<16} {g['kind']:<7} {scores}{top1}")
    lines += ["", f"{'attribute':<22} {'pos':>6} {'thr':>5} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'mA':>6}"]
    for name, a in metrics["attributes"].items():
        scores = " ".join(f"{100 * a[k]:6.2f}" for k in (*SUMMARY_KEYS, "mA"))
        lines.append(f"{name:<22} {a['positives']:>6.0f} {a['threshold']:5.2f} {scores}")
    return "\n".join(lines)
