"""Process-group plumbing for ``torchrun``: NCCL on GPUs, gloo on CPU (so it runs, and is tested, anywhere).

Outside torchrun (no ``WORLD_SIZE``) everything degrades to a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """A device that is not available here."""


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DeviceError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(requested_device: str, timeout_s: float = 1800) -> Context:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = choose_device(requested_device, int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return Context(rank=rank, world_size=world_size, device=device)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], ctx: Context) -> list[float]:
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_rows(rows: torch.Tensor, ctx: Context) -> list[torch.Tensor]:
    """Every process's ``rows [n_r, ...]`` (n_r may differ), on every process, in rank order."""
    if not ctx.distributed:
        return [rows]
    rows = rows.to(ctx.device)
    counts = [torch.zeros(1, dtype=torch.long, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(counts, torch.tensor([len(rows)], device=ctx.device))
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=ctx.device)
    padded[: len(rows)] = rows
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return [g[: int(c.item())].cpu() for g, c in zip(gathered, counts, strict=True)]


def broadcast_buffers(module: torch.nn.Module, ctx: Context) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics) before evaluating."""
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)
