"""Fitting decisions on held-out predictions: per-attribute thresholds and, optionally, temperatures.

- **Thresholds.** For each attribute, the threshold that maximises the objective (``f1``, or
  ``balanced_accuracy`` = (TPR + TNR) / 2, the attribute's mA) over the validation predictions. The search is
  exact: with the probabilities sorted, every distinct operating point "the k most probable are positive" is
  scored from cumulative counts, and the threshold is put half-way between the k-th and (k+1)-th probability.
  Of equally good points the highest threshold wins.
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

import numpy as np
import torch

from model.decisions import probabilities

OBJECTIVES = ("f1", "balanced_accuracy")
TEMPERATURE_RANGE = (0.05, 20.0)
# Probabilities saturate to 0.0 or 1.0 in fp32; checkpoints need thresholds strictly inside (0, 1).
THRESHOLD_MARGIN = 1e-6
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
    reachable = np.ones(len(p) + 1, dtype=bool)
    reachable[1:-1] = p[:-1] > p[1:]  # no threshold separates equal probabilities
    k = int(np.argmax(np.where(reachable, score, -np.inf)))
    upper = p[k - 1] if k > 0 else 1.0
    lower = p[k] if k < len(p) else 0.0
    return float(np.clip((upper + lower) / 2, THRESHOLD_MARGIN, 1 - THRESHOLD_MARGIN))


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
