"""The trainer's state, and the resume file that carries it: everything ``--resume`` needs to continue a run
exactly, in one file, with no pickle.

:class:`Progress` is where a run stands (epoch, step, the epoch's running loss, the best epoch so far). The
resume file is one ``.safetensors`` written atomically by ``model.files``. Tensors: the model's weights and
buffers except the frozen backbone (rebuilt from the config and seed, and checked against its recorded
fingerprint), the optimiser's per-parameter state, and every process's RNG state. Its header holds one JSON
document (key ``state``): the progress, the run's settings, the optimiser's hyper-parameters and the backbone's
fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from model.files import write_safetensors

from .distributed import Context, gather_rows

STATE_FILE = "resume.safetensors"
STATE_KEY = "state"


class ResumeError(ValueError):
    """A resume state that does not fit the run asked for."""


@dataclass
class Progress:
    """Where a run stands. ``epoch`` is the epoch in progress (``epochs + 1`` once training is done)."""

    epoch: int = 1
    step: int = 0  # optimiser steps done within ``epoch``
    global_step: int = 0
    loss_sum: float = 0.0  # training loss summed over the clips of ``epoch`` so far
    loss_count: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    world_size: int = 1

    def add_step(self, loss: float, clips: int) -> None:
        self.loss_sum += loss * clips
        self.loss_count += clips
        self.step += 1
        self.global_step += 1

    def improves(self, score: float) -> bool:
        return self.best_score is None or score > self.best_score

    def next_epoch(self) -> None:
        self.epoch, self.step, self.loss_sum, self.loss_count = self.epoch + 1, 0, 0.0, 0


@dataclass
class SavedState:
    """A resume file, read back."""

    progress: Progress
    settings: dict  # the run's settings (train.py's ``Run.settings``) when the state was saved
    backbone_sha256: str
    optimizer_param_groups: list
    optimizer_scalars: dict
    tensors: dict[str, torch.Tensor]


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
    path: Path,
    model,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    settings: dict,
    rngs: dict[str, torch.Tensor],
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
        "progress": asdict(progress),
        "settings": settings,
        "backbone_sha256": model.backbone.fingerprint,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "optimizer_scalars": scalars,
    }
    write_safetensors(path, tensors, {STATE_KEY: json.dumps(document)})


def load_state(path: Path) -> SavedState:
    try:
        with safe_open(str(path), framework="pt") as handle:
            document = json.loads((handle.metadata() or {})[STATE_KEY])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return SavedState(
            progress=Progress(**document["progress"]),
            settings=document["settings"],
            backbone_sha256=document["backbone_sha256"],
            optimizer_param_groups=document["optimizer_param_groups"],
            optimizer_scalars=document["optimizer_scalars"],
            tensors=tensors,
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ResumeError(f"{path} is not a readable resume state: {exc!r}") from None


def restore(saved: SavedState, model, optimizer: torch.optim.Optimizer, ctx: Context) -> None:
    """Load model, optimiser and this process's RNG state from a saved state."""
    if saved.backbone_sha256 != model.backbone.fingerprint:
        raise ResumeError(
            "the rebuilt backbone differs from the one the run started with (different preset, weights or seed?)"
        )
    weights = {name.removeprefix("model."): t for name, t in saved.tensors.items() if name.startswith("model.")}
    expected = _model_tensors(model)
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
        raise ResumeError("the saved weights do not fit the model built from the run's settings")
    model.load_state_dict(weights, strict=False)

    state: dict[int, dict] = {}
    for name, tensor in saved.tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for name, value in saved.optimizer_scalars.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    # The optimiser moves its state to each parameter's device itself.
    optimizer.load_state_dict({"state": state, "param_groups": saved.optimizer_param_groups})

    if saved.progress.world_size == ctx.world_size:
        torch.set_rng_state(saved.tensors[f"rng.cpu.{ctx.rank}"])
        if ctx.device.type == "cuda" and f"rng.cuda.{ctx.rank}" in saved.tensors:
            torch.cuda.set_rng_state(saved.tensors[f"rng.cuda.{ctx.rank}"], ctx.device)
