"""Running the model over a dataset: data loaders, mixed precision, and sharded prediction."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.precision import autocast as model_autocast

from .data.dataset import ClipDataset, shard_batches
from .distributed import Context, broadcast_buffers, gather_rows

PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked for (``auto`` = bf16 on CUDA, fp32 elsewhere; never fp16, which would need a
    gradient scaler), with model/'s one autocast."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return model_autocast(device, precision)


def make_loader(dataset: ClipDataset, batches: list, workers: int, device: torch.device) -> DataLoader:
    # A private generator: creating a loader must not consume the global RNG, or a resumed run would diverge.
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: ClipDataset,
    ctx: Context,
    *,
    batch_size: int,
    workers: int,
    precision: str = "auto",
    round_: int = 0,
    desc: str = "eval",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every item of ``dataset``, in dataset order, on every process.

    Each process predicts the items ``rank::world_size``; the shards are gathered and put back in order.
    """
    broadcast_buffers(model, ctx)
    model.eval()
    labels = dataset.labels()
    batches = shard_batches(list(range(ctx.rank, len(dataset), ctx.world_size)), batch_size, round_)
    loader = make_loader(dataset, batches, workers, ctx.device)
    outputs = [torch.zeros((0, labels.shape[1]), device=ctx.device)]  # a shard may be empty
    for clips, _, _ in tqdm(loader, total=len(batches), desc=desc, leave=False, disable=not ctx.is_main or None):
        with autocast(ctx.device, precision):
            outputs.append(model(clips.to(ctx.device, non_blocking=True)).float())
    local = torch.cat(outputs)
    logits = torch.empty((len(dataset), labels.shape[1]))
    for rank, shard in enumerate(gather_rows(local, ctx)):
        logits[rank :: ctx.world_size] = shard
    return logits.numpy(), labels
