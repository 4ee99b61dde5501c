"""The resume state: everything ``--resume`` needs to continue a run exactly, in one file, with no pickle.

A single ``.safetensors`` file, written atomically. Tensors: the model's weights and buffers except the frozen
backbone (rebuilt from the config and seed, and checked against its recorded fingerprint), the optimiser's
per-parameter state, and every process's RNG state. Its header holds one JSON document (key ``progress``):
epoch and step counters, the optimiser's hyper-parameters, the best score so far, the world size.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .distributed import Context, gather_rows

STATE_FILE = "resume.safetensors"
PROGRESS_KEY = "progress"


class ResumeError(ValueError):
    """A resume state that does not fit the run asked for."""


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _model_tensors(model) -> dict[str, torch.Tensor]:
    frozen = {f"backbone.{name}" for name in model.backbone.state_dict()}
    return {name: t for name, t in model.state_dict().items() if name not in frozen}


def rng_states(ctx: Context) -> dict[str, torch.Tensor]:
    """Every process's torch RNG state(s), gathered (a collective: all processes must call it)."""
    states = {"cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(ctx.device)
    gathered = {}
    for kind, state in states.items():
        for rank, row in enumerate(gather_rows(state.unsqueeze(0), ctx)):
            gathered[f"rng.{kind}.{rank}"] = row[0].cpu()
    return gathered


def save_state(
    path: Path, model, optimizer: torch.optim.Optimizer, progress: dict, rngs: dict[str, torch.Tensor]
) -> None:
    tensors = {f"model.{name}": t.detach().cpu().contiguous() for name, t in _model_tensors(model).items()}
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    tensors.update(rngs)
    document = {
        **progress,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "optimizer_scalars": scalars,
        "backbone_sha256": model.backbone.fingerprint,
    }
    _atomic_save(tensors, path, {PROGRESS_KEY: json.dumps(document)})


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            progress = json.loads((handle.metadata() or {})[PROGRESS_KEY])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ResumeError(f"{path} is not a readable resume state: {exc!r}") from None
    return tensors, progress


def restore(
    tensors: dict[str, torch.Tensor], progress: dict, model, optimizer: torch.optim.Optimizer, ctx: Context
) -> None:
    """Load model, optimiser and this process's RNG state from a saved state."""
    if progress["backbone_sha256"] != model.backbone.fingerprint:
        raise ResumeError(
            "the rebuilt backbone differs from the one the run started with (different preset, weights or seed?)"
        )
    weights = {name.removeprefix("model."): t for name, t in tensors.items() if name.startswith("model.")}
    expected = _model_tensors(model)
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
        raise ResumeError("the saved weights do not fit the model built from the run's settings")
    model.load_state_dict(weights, strict=False)

    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for name, value in progress["optimizer_scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    # The optimiser moves its state to each parameter's device itself.
    optimizer.load_state_dict({"state": state, "param_groups": progress["optimizer_param_groups"]})

    if progress["world_size"] == ctx.world_size:
        torch.set_rng_state(tensors[f"rng.cpu.{ctx.rank}"])
        if ctx.device.type == "cuda" and f"rng.cuda.{ctx.rank}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{ctx.rank}"], ctx.device)
