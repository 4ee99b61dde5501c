"""The model card's figures, drawn with matplotlib's object API and its Agg canvas: no display, no pyplot state.

Every figure is drawn from evaluation results (training/evaluate.py) or, for the precision-recall curves, from
the same predictions the evaluation scored.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from model import AttributeSchema

BEFORE, AFTER = "#9e9e9e", "#1f77b4"  # default threshold and plain sigmoid / calibrated
DPI = 110


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: reruns give the same file


def _default_label(default: dict) -> str:
    threshold = next(iter(default["attributes"].values()))["threshold"]
    return f"threshold {threshold:g}"


def _short_names(names: list[str]) -> list[str]:
    """Class names without their group's shared prefix ("top_black" -> "black")."""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("_") + 1]
    return [name.removeprefix(prefix) for name in names]


def attribute_scores(path: Path, default: dict, calibrated: dict) -> None:
    """Per-attribute F1 and mA bars at the default threshold next to the calibrated ones."""
    names = list(default["attributes"])
    x = np.arange(len(names))
    figure = Figure(figsize=(max(8, 0.32 * len(names)), 7.5))
    for row, (key, label) in enumerate((("f1", "F1"), ("mA", "mA (balanced accuracy)"))):
        axes = figure.add_subplot(2, 1, row + 1)
        axes.bar(
            x - 0.2, [default["attributes"][n][key] for n in names], 0.4, color=BEFORE, label=_default_label(default)
        )
        axes.bar(x + 0.2, [calibrated["attributes"][n][key] for n in names], 0.4, color=AFTER, label="calibrated")
        axes.set_ylabel(label)
        axes.set_ylim(0, 1)
        axes.set_xlim(-0.7, len(names) - 0.3)
        axes.set_xticks(x, names if row == 1 else [""] * len(names), rotation=90, fontsize=8)
        axes.grid(axis="y", alpha=0.3)
        if row == 0:
            axes.legend(loc="upper right", fontsize=8, ncols=2)
    _save(figure, path)


def _curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold, from the most confident clip down."""
    order = np.argsort(-probs, kind="stable")
    hits = labels[order].astype(np.float64)
    tp, predicted = np.cumsum(hits), np.arange(1, len(hits) + 1)
    last_of_tie = np.r_[probs[order][1:] != probs[order][:-1], True]
    return tp[last_of_tie] / max(hits.sum(), 1), tp[last_of_tie] / predicted[last_of_tie]


def precision_recall(
    path: Path, schema: AttributeSchema, probs: np.ndarray, labels: np.ndarray, default: dict, calibrated: dict
) -> None:
    """One panel per group: each attribute's precision-recall curve, with its operating points at the default
    threshold (circle) and the calibrated one (star)."""
    columns = 4
    rows = math.ceil(len(schema.groups) / columns)
    figure = Figure(figsize=(4 * columns, 3.4 * rows))
    for index, group in enumerate(schema.groups):
        axes = figure.add_subplot(rows, columns, index + 1)
        for column in group.columns:
            name = schema.names[column]
            if labels[:, column].sum() == 0:
                continue  # no positives: no curve
            recall, precision = _curve(probs[:, column], labels[:, column])
            (line,) = axes.plot(recall, precision, linewidth=1, label=name)
            for scores, marker in ((default, "o"), (calibrated, "*")):
                point = scores["attributes"][name]
                axes.plot(point["recall"], point["precision"], marker, color=line.get_color(), markersize=7)
        axes.set_title(group.name, fontsize=10)
        axes.set_xlim(0, 1.02)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall", fontsize=8)
        axes.set_ylabel("precision", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if len(group.columns) > 1:
            axes.legend(fontsize=6, loc="lower left")
    figure.suptitle(f"precision-recall per attribute (o: {_default_label(default)}, *: calibrated)", fontsize=11)
    _save(figure, path)


def reliability(path: Path, before: dict, after: dict) -> None:
    """Reliability diagram of all (clip, attribute) probabilities, plain sigmoid and calibrated, with bin counts."""
    figure = Figure(figsize=(6, 7))
    axes = figure.add_subplot(4, 1, (1, 3))
    axes.plot([0, 1], [0, 1], ":", color="black", linewidth=1, label="perfectly calibrated")
    for bins, color, label in ((before, BEFORE, "plain sigmoid"), (after, AFTER, "calibrated")):
        filled = np.asarray(bins["count"]) > 0
        axes.plot(
            np.asarray(bins["mean_probability"])[filled],
            np.asarray(bins["positive_rate"])[filled],
            "o-",
            color=color,
            label=f"{label} (ECE {bins['ece']:.3f})",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of positives")
    axes.legend(fontsize=8, loc="upper left")
    axes.grid(alpha=0.3)
    counts = figure.add_subplot(4, 1, 4, sharex=axes)
    edges = np.linspace(0, 1, len(before["count"]) + 1)
    width = edges[1] - edges[0]
    counts.bar(edges[:-1] + width * 0.3, before["count"], width * 0.4, color=BEFORE)
    counts.bar(edges[:-1] + width * 0.7, after["count"], width * 0.4, color=AFTER)
    counts.set_yscale("log")
    counts.set_xlabel("predicted probability")
    counts.set_ylabel("pairs per bin", fontsize=8)
    _save(figure, path)


def confusion(path: Path, schema: AttributeSchema, metrics: dict) -> None:
    """Confusion matrices of the one-of groups' winners (rows: true class, shaded by row share)."""
    groups = [g for g in schema.groups if g.kind == "one_of"]
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure = Figure(figsize=(5.2 * columns, 4.8 * rows))
    for index, group in enumerate(groups):
        axes = figure.add_subplot(rows, columns, index + 1)
        counts = np.asarray(metrics["groups"][group.name]["confusion"])
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        names = _short_names([schema.names[c] for c in group.columns])
        ticks = np.arange(len(names))
        axes.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
        axes.set_yticks(ticks, names, fontsize=7)
        for (true, winner), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[true, winner] > 0.6 else "black"
                axes.text(winner, true, str(count), ha="center", va="center", fontsize=6, color=colour)
        top1 = metrics["groups"][group.name]["winner_accuracy"]
        axes.set_title(f"{group.name} (top-1 {top1:.3f})", fontsize=10)
        axes.set_xlabel("winner", fontsize=8)
        axes.set_ylabel("true class", fontsize=8)
    _save(figure, path)
