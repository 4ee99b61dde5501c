"""The paper's loss (docs/method.md §2.1): BCE with per-column weights from the training split's positive ratios.

For column j with positive ratio r_j, a positive label weighs exp(1 - r_j) and a negative one exp(r_j), so rare
positives count more. The weighted BCE is summed over columns and divided by the batch size only. (The reference
also zeroes the weight of labels > 1; every reader here accepts only 0/1, so that case cannot arise.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def positive_ratios(labels: np.ndarray) -> torch.Tensor:
    """Per-column fraction of positives over a split's ``[N, A]`` 0/1 label matrix."""
    if labels.ndim != 2 or len(labels) == 0:
        raise ValueError(f"expected a non-empty [N, A] label matrix, got shape {labels.shape}")
    return torch.from_numpy(labels.astype(np.float64).mean(axis=0)).float()


class WeightedBCELoss(nn.Module):
    ratios: torch.Tensor  # a buffer: it follows the module to the loss's device

    def __init__(self, ratios: torch.Tensor):
        super().__init__()
        self.register_buffer("ratios", ratios.detach().float().clone())

    def weights(self, targets: torch.Tensor) -> torch.Tensor:
        return torch.exp(targets * (1 - self.ratios) + (1 - targets) * self.ratios)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        per_entry = F.binary_cross_entropy_with_logits(logits, targets, weight=self.weights(targets), reduction="sum")
        return per_entry / logits.shape[0]
