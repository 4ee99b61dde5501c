"""What a Ray replica may do with the node's GPUs. Ray's ``num_gpus`` is a scheduling count, not a limit: a replica
given half a GPU can still fill all of its memory, and an actor that reserves none still sees every GPU (Ray sets
``CUDA_VISIBLE_DEVICES`` only for actors that reserve one), so a stray CUDA call lands on GPU 0 beside the model."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def cap_gpu_memory(reserved_gpus: float) -> None:
    """A model replica reserving a fraction of a GPU gets that fraction of its memory (an allocation beyond it is
    an out-of-memory error in this replica, not in its neighbours')."""
    if 0 < reserved_gpus < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(reserved_gpus)
        log.info("this replica may use %.0f%% of its GPU's memory (num_gpus=%g)", 100 * reserved_gpus, reserved_gpus)


def hide_gpus() -> None:
    """An actor that reserves no GPU sees none: called in its constructor, before anything initialises CUDA."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
