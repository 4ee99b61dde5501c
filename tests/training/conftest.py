"""Shared fixtures: tiny image writers and one small synthetic dataset generated once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from training.synthetic.tracklets import generate

REPO = Path(__file__).resolve().parents[2]


def write_frame(path: Path, value: int = 128, size: tuple[int, int] = (16, 8)) -> Path:
    """A small solid JPEG (the readers only care that frames exist and decode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def subprocess_env() -> dict:
    """Environment for CLI subprocesses: the repo importable, no hub, few threads."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


PYTHON = sys.executable


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """40 short synthetic tracklets at 64x32: enough for CLI, resume and DDP tests."""
    out = tmp_path_factory.mktemp("synthetic_small")
    return generate(
        out, tracklets=40, seed=5, frames_per_tracklet=(6, 10), size=(64, 32), priors="uniform", test_fraction=0.3
    )


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores: in-process training tests share them with nothing else.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
