"""The paper's loss (docs/method.md §2.1) and learning-rate schedule (§2.2)."""

import math

import numpy as np
import pytest
import torch

from training.loss import WeightedBCELoss, positive_ratios
from training.schedule import WarmupCosine


def test_positive_ratios_are_column_means_of_the_training_labels():
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=np.uint8)
    assert positive_ratios(labels).tolist() == [0.25, 0.25, 1.0]


def test_loss_equals_a_hand_computed_example():
    ratios = torch.tensor([0.25, 0.5])
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Positives weigh exp(1 - r), negatives exp(r); BCE summed over attributes, divided by the batch size (2).
    expected = (
        math.exp(0.75) * math.log(2)  # sample 0, attr 0: y=1, z=0
        + math.exp(0.5) * math.log(1 + math.e**2)  # sample 0, attr 1: y=0, z=2
        + math.exp(0.25) * math.log(1 + math.e**-1)  # sample 1, attr 0: y=0, z=-1
        + math.exp(0.5) * math.log(2)
    ) / 2  # sample 1, attr 1: y=1, z=0
    assert WeightedBCELoss(ratios)(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_not_averaged_over_attributes():
    one = WeightedBCELoss(torch.tensor([0.5]))(torch.zeros(4, 1), torch.ones(4, 1))
    ten = WeightedBCELoss(torch.full((10,), 0.5))(torch.zeros(4, 10), torch.ones(4, 10))
    assert ten.item() == pytest.approx(10 * one.item())


# The learning rates docs/method.md §2.2 prints, with its rounding.
PAPER_LR = {
    1: "2.08e-4",
    2: "4.06e-4",
    3: "6.04e-4",
    4: "8.02e-4",
    5: "9.33e-4",
    10: "7.51e-4",
    15: "5.01e-4",
    20: "2.52e-4",
    25: "6.89e-5",
    29: "4.7e-6",
    30: "2.0e-6",
}


def test_schedule_gives_the_paper_values():
    schedule = WarmupCosine.from_ratios(1e-3, epochs=30, warmup_epochs=5)
    for epoch, printed in PAPER_LR.items():
        digits = len(printed.split("e")[0].replace(".", ""))
        # Rounded to the digits the table prints, ours is the table's value.
        assert float(f"{schedule.lr(epoch):.{digits - 1}e}") == float(printed), epoch
    assert max(schedule.lr(e) for e in range(1, 31)) < 1e-3  # the nominal rate is never reached


def test_schedule_matches_timm_cosine_scheduler_stepped_per_epoch():
    from timm.scheduler import CosineLRScheduler

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    timm_schedule = CosineLRScheduler(
        optimizer,
        t_initial=30,
        lr_min=2e-6,
        warmup_t=5,
        warmup_lr_init=1e-5,
        cycle_limit=1,
        t_in_epochs=True,
        warmup_prefix=False,
    )
    ours = WarmupCosine.from_ratios(1e-3, epochs=30, warmup_epochs=5)
    for epoch in range(1, 31):
        timm_schedule.step(epoch)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(ours.lr(epoch), rel=1e-12, abs=1e-15)
