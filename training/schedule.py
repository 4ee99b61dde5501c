"""The learning-rate schedule of docs/method.md §2.2: linear warm-up, then cosine decay, set once per epoch.

It reproduces timm's ``CosineLRScheduler(t_initial=epochs, lr_min, warmup_t, warmup_lr_init, cycle_limit=1,
warmup_prefix=False, t_in_epochs=True)`` stepped with the epoch number 1..E at the start of each epoch. A
pure function of the epoch rather than timm's stateful object, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    base_lr: float = 1e-3
    epochs: int = 30
    warmup_epochs: int = 5
    # The reference derives both from the base rate: warm-up starts at 1 % of it and decays to 0.2 %.
    warmup_lr_init: float = 1e-5
    min_lr: float = 2e-6

    @classmethod
    def from_ratios(
        cls, base_lr: float, epochs: int, warmup_epochs: int = 5, warmup_ratio: float = 0.01, min_ratio: float = 0.002
    ) -> WarmupCosine:
        return cls(
            base_lr=base_lr,
            epochs=epochs,
            warmup_epochs=warmup_epochs,
            warmup_lr_init=warmup_ratio * base_lr,
            min_lr=min_ratio * base_lr,
        )

    def lr(self, epoch: int) -> float:
        """The rate used during epoch ``epoch`` (1-based)."""
        if epoch < self.warmup_epochs:
            return self.warmup_lr_init + epoch * (self.base_lr - self.warmup_lr_init) / self.warmup_epochs
        if epoch >= self.epochs:
            return self.min_lr
        # As in timm without warmup_prefix, the cosine runs over the whole schedule, warm-up epochs included.
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * epoch / self.epochs))
