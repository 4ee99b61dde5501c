"""Shared fixtures: a tiny checkpoint made here, the model called directly, and real uvicorn servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.inference import ModelRunner
from model import create_model, get_config, load_checkpoint, load_schema, sample_frame_indices, save_checkpoint

from .harness import make_settings, serving


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model(get_config("tiny"), load_schema("mars"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint):
    """The same checkpoint loaded on its own: the "direct model call" served answers must equal."""
    return load_checkpoint(tiny_checkpoint).model


@pytest.fixture(scope="session")
def direct(reference_model):
    """probabilities(list of RGB frames of a whole clip) -> (indices, probabilities) as the model sees them."""

    def call(all_frames: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
        indices = sample_frame_indices(len(all_frames), reference_model.config.frames, "segment_middle")
        clip = reference_model.preprocess([all_frames[i] for i in indices])
        with torch.inference_mode():
            return indices, torch.sigmoid(reference_model(clip[None]))[0].numpy()

    return call


# Limits small enough that the limit tests need only small synthetic clips.
E2E_LIMITS = dict(
    max_upload_bytes=2_000_000,
    max_pixels=320 * 240,
    max_duration_s=20,
    max_frames_decoded=200,
    max_upload_frames=16,
    max_batch_clips=8,
    max_batch_wait_ms=20,
    max_queue=128,
)


@pytest.fixture(scope="session")
def server(tiny_checkpoint):
    """One real server (uvicorn on 127.0.0.1) shared by the end-to-end tests that do not need special settings."""
    with serving(make_settings(tiny_checkpoint, **E2E_LIMITS)) as running:
        yield running


@pytest.fixture(scope="session")
def runner(tiny_checkpoint) -> ModelRunner:
    return ModelRunner.load(make_settings(tiny_checkpoint))


CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own browser download cannot be had here


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, driven by Playwright (the console's tests)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
