"""The model runner: device and precision choice, both ways of preparing clips, warm-up sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.inference import ModelRunner, StartupError, resolve_device, resolve_service_precision, warmup_batch_sizes
from app.metrics import Metrics
from model.precision import resolve_precision

from .harness import make_settings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def clips_of_mixed_sizes(count: int, frames: int) -> list[list[np.ndarray]]:
    """Clips whose frames differ in size within a clip and across clips (tracker crops do)."""
    rng = np.random.default_rng(0)
    sizes = [(64, 32), (48, 40), (30, 90), (64, 32)]
    return [
        [rng.integers(0, 256, (*sizes[(c + f) % len(sizes)], 3), dtype=np.uint8) for f in range(frames)]
        for c in range(count)
    ]


def test_cpu_runs_fp32_and_refuses_half_precision():
    assert resolve_service_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(StartupError, match="needs CUDA"):
        resolve_service_precision("bf16", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only host")
def test_asking_for_cuda_without_it_fails_clearly():
    with pytest.raises(StartupError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_on_a_host_without_cuda_says_why_it_picked_the_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def no_driver():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 12040).")

    monkeypatch.setattr(torch.cuda, "init", no_driver)
    with caplog.at_level("WARNING", logger="app.inference"):
        assert resolve_device("auto") == torch.device("cpu")
    assert "VTFPAR_DEVICE=auto: the model runs on the CPU, because The NVIDIA driver on your system is too old" in (
        caplog.text
    )
    assert "needs NVIDIA driver 580 or later" in caplog.text


def test_auto_precision_is_bf16_only_where_the_gpu_runs_it_natively(monkeypatch):
    """T4 and V100 emulate bf16 (torch says "supported" unless asked about emulation): they get fp16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_warmup_covers_powers_of_two_and_the_largest_batch():
    assert warmup_batch_sizes(1) == [1]
    assert warmup_batch_sizes(8) == [1, 2, 4, 8]
    assert warmup_batch_sizes(12) == [1, 2, 4, 8, 12]


def test_predict_is_the_sigmoid_of_the_model_on_preprocessed_frames(runner, reference_model):
    clips = clips_of_mixed_sizes(3, runner.frames_per_clip)
    with torch.inference_mode():
        batch = torch.stack([reference_model.preprocess(clip) for clip in clips])
        expected = torch.sigmoid(reference_model(batch)).numpy()
    probabilities = runner.predict([runner.prepare(clip) for clip in clips])
    assert probabilities.shape == (3, 43) and probabilities.dtype == expected.dtype
    assert probabilities == pytest.approx(expected, abs=1e-6)


def test_preprocessing_in_the_batch_matches_preprocessing_on_decode_threads(runner):
    """The GPU path (uint8 frames handed over, padded and resized batch-wise on the model's device) run on CPU:
    same answers as the CPU path within the uint8-versus-float resizing difference."""
    in_batch = ModelRunner(runner.model, runner.served, runner.device, "fp32", preprocess_in_batch=True)
    clips = clips_of_mixed_sizes(4, runner.frames_per_clip)
    handed_over = [in_batch.prepare(clip) for clip in clips]
    assert all(frame.dtype == torch.uint8 for clip in handed_over for frame in clip)
    expected = runner.predict([runner.prepare(clip) for clip in clips])
    assert in_batch.predict(handed_over) == pytest.approx(expected, abs=0.02)


@cuda
def test_cuda_autocast_stays_close_to_fp32(tiny_checkpoint, runner):
    on_gpu = ModelRunner.load(make_settings(tiny_checkpoint, device="cuda"))
    assert on_gpu.precision in ("bf16", "fp16") and on_gpu.preprocess_in_batch
    clips = clips_of_mixed_sizes(4, on_gpu.frames_per_clip)
    expected = runner.predict([runner.prepare(clip) for clip in clips])
    assert on_gpu.predict([on_gpu.prepare(clip) for clip in clips]) == pytest.approx(expected, abs=2e-2)
    on_gpu.warm_up([1, 4])
    metrics = Metrics()
    metrics.set_model("tiny", "v", "mars", on_gpu.device, on_gpu.precision)
    metrics.track_gpu_memory(on_gpu.device)
    assert b"vtfpar_gpu_memory_allocated_bytes" in metrics.exposition()
