"""Fitting decisions on held-out predictions: per-attribute thresholds and, optionally, temperatures.

- **Thresholds.** For each attribute, the threshold that maximises the objective (``f1``, or
  ``balanced_accuracy`` = (TPR + TNR) / 2, the attribute's mA) over the validation predictions. The search is
  exact: with the probabilities sorted, every distinct operating point "the k most probable are positive" is
  scored from cumulative counts, and the threshold is put half-way between the k-th and (k+1)-th probability.
  Of equally good points the highest threshold wins. A point no threshold inside (0, 1) can make is not a
  candidate: probabilities saturate to exactly 1.0 (or 0.0) in fp32, and as "positive iff probability >
  threshold" nothing keeps a 1.0 negative (or makes a 0.0 positive), so "none positive" with a 1.0 among the
  probabilities (or "all positive" with a 0.0) is not an operating point a checkpoint can hold.
- **Temperatures** (optional). For each attribute, T > 0 minimising the mean binary cross-entropy of
  sigmoid(logit / T) on the validation labels. The loss is convex in 1/T, so a bisection on its derivative finds
  the minimum (within ``TEMPERATURE_RANGE``). A temperature keeps an attribute's ranking (so its best threshold
  picks the same clips) but makes its probabilities honest, and it can change which class of a one-of group
  wins. Thresholds are fit on the tempered probabilities.

An attribute whose validation labels hold one class only (no positives, or no negatives) keeps the default
threshold and temperature 1: nothing on the validation split says where to put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from model.decisions import probabilities

OBJECTIVES = ("f1", "balanced_accuracy")
TEMPERATURE_RANGE = (0.05, 20.0)
BISECTION_STEPS = 60


@dataclass(frozen=True)
class Fit:
    thresholds: list[float]
    temperatures: list[float] | None
    kept_default: list[int]  # columns with one class only on the validation split


def one_class_only(labels: np.ndarray) -> bool:
    positives = int(np.sum(labels))
    return positives == 0 or positives == len(labels)


def fit_threshold(probs: np.ndarray, labels: np.ndarray, objective: str) -> float:
    """The threshold maximising ``objective`` for one attribute's ``probs [N]`` and 0/1 ``labels [N]`` (both
    classes present)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    order = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")
    p, y = np.asarray(probs, dtype=np.float64)[order], np.asarray(labels, dtype=np.float64)[order]
    num_positive, num_negative = y.sum(), len(y) - y.sum()
    # Operating point k (0..N): the k most probable clips are positive.
    tp = np.concatenate([[0.0], np.cumsum(y)])
    fp = np.concatenate([[0.0], np.cumsum(1 - y)])
    if objective == "f1":
        score = 2 * tp / (2 * tp + fp + (num_positive - tp))
    else:
        score = (tp / num_positive + (num_negative - fp) / num_negative) / 2
    bounds = np.concatenate([[np.inf], p, [-np.inf]])  # point k lies between bounds[k + 1] and bounds[k]
    thresholds = [_threshold_between(bounds[k + 1], bounds[k]) for k in range(len(p) + 1)]
    k = int(np.argmax([score[k] if t is not None else -np.inf for k, t in enumerate(thresholds)]))
    return cast(float, thresholds[k])


def _threshold_between(lower: float, upper: float) -> float | None:
    """A threshold t inside (0, 1) with ``lower <= t < upper``, so that "probability > t" makes every probability
    from ``upper`` up positive and every one up to ``lower`` negative: half-way (within (0, 1)), else ``lower``;
    None if there is none (equal probabilities, or one saturated at the wrong end)."""
    low, high = max(lower, 0.0), min(upper, 1.0)
    for threshold in ((low + high) / 2, lower):
        if 0.0 < threshold < 1.0 and lower <= threshold < upper:
            return float(threshold)
    return None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))  # no overflow for large |x|, unlike 1 / (1 + exp(-x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the cross-entropy of sigmoid(logits / T) against ``labels`` (both classes present)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)

    def slope(scale: float) -> float:  # d/d(scale) of the mean cross-entropy of sigmoid(scale * z)
        return float(np.mean((_sigmoid(scale * z) - y) * z))

    low, high = np.log(1 / TEMPERATURE_RANGE[1]), np.log(1 / TEMPERATURE_RANGE[0])
    if slope(np.exp(low)) >= 0:
        return TEMPERATURE_RANGE[1]
    if slope(np.exp(high)) <= 0:
        return TEMPERATURE_RANGE[0]
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if slope(np.exp(middle)) < 0 else (low, middle)
    return float(1 / np.exp((low + high) / 2))


def fit_decisions(
    logits: np.ndarray, labels: np.ndarray, *, objective: str, temperature: bool, default_threshold: float
) -> Fit:
    """Thresholds (and temperatures, if asked) for every column of validation ``logits [N, A]``."""
    kept_default = [j for j in range(labels.shape[1]) if one_class_only(labels[:, j])]
    temperatures = None
    if temperature:
        temperatures = [
            1.0 if j in kept_default else fit_temperature(logits[:, j], labels[:, j]) for j in range(labels.shape[1])
        ]
    probs = probabilities(torch.from_numpy(np.asarray(logits)), temperatures).numpy()
    thresholds = [
        default_threshold if j in kept_default else fit_threshold(probs[:, j], labels[:, j], objective)
        for j in range(labels.shape[1])
    ]
    return Fit(thresholds=thresholds, temperatures=temperatures, kept_default=kept_default)
