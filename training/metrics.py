"""Evaluation metrics (docs/method.md §4.1 and §4.2) with per-group and per-attribute tables.

- **VTFPAR++ protocol** (what the paper reports): positive iff p > threshold (0.45). Per group, TP/TN/FP/FN are
  summed over all (sample, column) pairs of the group's columns; Accuracy/Precision/Recall/F1 of each group are
  then averaged over groups, unweighted. One-hot groups are thresholded column by column, so predicting all
  zeros on a 9-way group still scores accuracy 8/9.
- **Label-based mA**: mean over columns of (TPR + TNR) / 2.
- **Instance-based** Accuracy (|Y∩Ŷ| / |Y∪Ŷ|), Precision, Recall and F1 per sample over all columns, averaged
  over samples.

Denominators get eps = 1e-20 as in the reference, so an empty denominator gives 0.
"""

from __future__ import annotations

import numpy as np

from model import AttributeSchema

EPS = 1e-20
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1")


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


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, schema: AttributeSchema, thresholds: float | list[float] | np.ndarray = 0.45
) -> dict:
    """All metrics for sigmoid outputs ``probs [N, A]`` against 0/1 ``labels [N, A]``, as a JSON-ready dict."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.shape != labels.shape or probs.ndim != 2 or probs.shape[1] != len(schema):
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be [N, {len(schema)}]")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(schema),))
    predicted, actual = probs > thresholds, labels == 1
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
            **{key: float(values[j]) for key, values in per_column.items()},
        }
        for j, name in enumerate(schema.names)
    }
    groups = {}
    for group in schema.groups:
        columns = list(group.columns)
        scores = _scores(*(counts[columns].sum() for counts in (tp, fp, tn, fn)))
        groups[group.name] = {
            "kind": group.kind,
            **{key: float(scores[key]) for key in SUMMARY_KEYS},
            "mA": float(per_column["mA"][columns].mean()),
        }

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
        "groups": groups,
        "attributes": attributes,
    }


def headline(metrics: dict) -> dict[str, float]:
    """The numbers worth a log line: protocol Acc/Prec/Rec/F1, mA and instance F1."""
    return {
        **{f"protocol_{k}": v for k, v in metrics["protocol"].items()},
        "mA": metrics["mA"],
        "instance_f1": metrics["instance"]["f1"],
    }


def format_report(metrics: dict) -> str:
    """A readable summary, a per-group table and a per-attribute table (percentages)."""
    protocol, instance = metrics["protocol"], metrics["instance"]
    lines = [
        f"{metrics['num_samples']:.0f} tracklets",
        "VTFPAR++ protocol (mean over groups): " + "  ".join(f"{k} {100 * protocol[k]:.2f}" for k in SUMMARY_KEYS),
        f"label-based mA {100 * metrics['mA']:.2f}   instance-based: "
        + "  ".join(f"{k} {100 * instance[k]:.2f}" for k in SUMMARY_KEYS),
        "",
        f"{'group':<16} {'kind':<7} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'mA':>6}",
    ]
    for name, g in metrics["groups"].items():
        lines.append(f"{name:<16} {g['kind']:<7} " + " ".join(f"{100 * g[k]:6.2f}" for k in (*SUMMARY_KEYS, "mA")))
    lines += ["", f"{'attribute':<22} {'pos':>6} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'mA':>6}"]
    for name, a in metrics["attributes"].items():
        scores = " ".join(f"{100 * a[k]:6.2f}" for k in (*SUMMARY_KEYS, "mA"))
        lines.append(f"{name:<22} {a['positives']:>6.0f} {scores}")
    return "\n".join(lines)
