"""Precision, named one way everywhere: the backbone's stored dtype, the trainer's and the service's autocast."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "fp16", "bf16")
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA (fp16 where bf16 is not supported) and fp32 elsewhere; other values stay."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    # Without including_emulation=False, torch answers True on GPUs that only emulate bf16 (T4, V100): slow.
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device`` (none for fp32). The model's head runs in fp32 regardless."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=TORCH_DTYPES[precision])
