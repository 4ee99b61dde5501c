"""The model runner: device and dtype choice, probabilities equal to a plain model call, warm-up sizes."""

from __future__ import annotations

import pytest
import torch

from app.inference import ModelRunner, StartupError, resolve_device, resolve_dtype, warmup_batch_sizes
from app.metrics import Metrics

from .harness import make_settings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cpu_runs_fp32_and_refuses_half_precision():
    assert resolve_dtype("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(StartupError, match="needs CUDA"):
        resolve_dtype("bf16", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only host")
def test_asking_for_cuda_without_it_fails_clearly():
    with pytest.raises(StartupError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_warmup_covers_powers_of_two_and_the_largest_batch():
    assert warmup_batch_sizes(1) == [1]
    assert warmup_batch_sizes(8) == [1, 2, 4, 8]
    assert warmup_batch_sizes(12) == [1, 2, 4, 8, 12]


def test_predict_is_the_sigmoid_of_the_model_in_inference_mode(runner, reference_model):
    clips = torch.randn(3, runner.frames_per_clip, 3, 32, 32)
    with torch.inference_mode():
        expected = torch.sigmoid(reference_model(clips)).numpy()
    probabilities = runner.predict(clips)
    assert probabilities.shape == (3, 43) and probabilities.dtype == expected.dtype
    assert probabilities == pytest.approx(expected, abs=1e-6)


@cuda
def test_cuda_autocast_stays_close_to_fp32(tiny_checkpoint, reference_model):
    runner = ModelRunner.load(make_settings(tiny_checkpoint, device="cuda"))
    assert runner.dtype in ("bf16", "fp16")
    clips = torch.randn(4, runner.frames_per_clip, 3, 32, 32)
    with torch.inference_mode():
        expected = torch.sigmoid(reference_model(clips)).numpy()
    assert runner.predict(clips) == pytest.approx(expected, abs=2e-2)
    runner.warm_up([1, 4])
    metrics = Metrics()
    metrics.set_model("tiny", "v", "mars", runner.device, runner.dtype)
    assert b"vtfpar_gpu_memory_allocated_bytes" in metrics.exposition()
