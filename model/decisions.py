"""How logits become the answers a user acts on, in one place for evaluation, calibration and the service.

- probability = sigmoid(logit / temperature), attribute by attribute; the temperature is 1 (a plain sigmoid)
  unless the checkpoint was calibrated with temperatures;
- an attribute is positive iff its probability > its threshold;
- the winner of a one-of group is its most probable class (the first of equals).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .schema import AttributeSchema


def probabilities(logits: torch.Tensor, temperatures: Sequence[float] | None = None) -> torch.Tensor:
    """``logits [..., A]`` -> probabilities in fp32, with per-attribute ``temperatures`` when given."""
    logits = logits.float()
    if temperatures is not None:
        logits = logits / torch.as_tensor(temperatures, dtype=torch.float32, device=logits.device)
    return torch.sigmoid(logits)


def positives(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean decisions for ``probs [..., A]``: probability > threshold, attribute by attribute."""
    return np.asarray(probs) > np.asarray(thresholds, dtype=np.float64)


def one_of_winners(probs: np.ndarray, schema: AttributeSchema) -> dict[str, np.ndarray]:
    """For each one-of group of ``schema``: the column of its most probable class, per row of ``probs [..., A]``."""
    probs = np.asarray(probs)
    return {
        group.name: np.asarray(group.columns)[np.argmax(probs[..., list(group.columns)], axis=-1)]
        for group in schema.groups
        if group.kind == "one_of"
    }
