"""VTFPAR_COMPILE: the forward pass through torch.compile (inductor), padded up to the warmed batch sizes.

On CPU this runs the real inductor backend, which is what CI can check of the CUDA path (there, the same code adds
CUDA graphs: ``mode="reduce-overhead"``, tested on a GPU only). The module compiles the tiny model once, for
sizes 2 and 4 (one dynamic-batch graph): about 2 minutes of CPU with a cold inductor cache (4 minutes of wall time
on 2 cores shared with other test runs), about 15 s once inductor's cache holds it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from app.compiled import CALLS_TO_CAPTURE, CompiledForward, resolve_compile
from app.inference import ModelRunner

from .harness import make_settings
from .test_inference import clips_of_mixed_sizes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA")
WARMED = [2, 4]
# Inductor fuses and reorders float operations; on the tiny model the probabilities move by about 1e-7.
TOLERANCE = 1e-5


def graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def compiled(runner):
    """The tiny model served compiled, warmed up at WARMED, and how many graphs that warm-up compiled."""
    compiled_runner = ModelRunner(runner.model, runner.served, runner.device, "fp32", compile=True)
    before = graphs_compiled()
    compiled_runner.warm_up(WARMED)
    return compiled_runner, graphs_compiled() - before


def test_auto_compiles_on_cuda_only(tiny_checkpoint):
    assert resolve_compile("auto", torch.device("cuda")) and not resolve_compile("auto", torch.device("cpu"))
    assert resolve_compile("on", torch.device("cpu")) and not resolve_compile("off", torch.device("cuda"))
    assert ModelRunner.load(make_settings(tiny_checkpoint)).compiled is None
    assert ModelRunner.load(make_settings(tiny_checkpoint, compile="on")).compiled is not None


@pytest.mark.parametrize(("device", "calls"), [("cpu", 1), ("cuda", CALLS_TO_CAPTURE)])
def test_warm_up_runs_each_size_as_often_as_compiling_and_capturing_it_takes(runner, monkeypatch, device, calls):
    """CUDA graph trees record a shape's graph on its second call (the first is an eager warm-up): warmed twice,
    every size is captured before any request; without CUDA graphs once compiles it. Only the count is checked
    here (nothing runs compiled)."""
    assert CALLS_TO_CAPTURE == 2
    compiled_runner = ModelRunner(runner.model, runner.served, runner.device, "fp32")
    compiled_runner.compiled = CompiledForward(runner.model, torch.device(device))  # compiles lazily: never called
    sizes = []
    monkeypatch.setattr(compiled_runner, "predict", lambda clips: sizes.append(len(clips)))
    compiled_runner.warm_up([1, 2, 4])
    # Size 4 also once padded (3 rows of mixed frame sizes); sizes 1 and 2 have no smaller batch padded up to them.
    assert sizes == [1] * calls + [2] * calls + [4] * calls + [3]
    assert compiled_runner.compiled.sizes == [1, 2, 4]


@pytest.mark.slow  # inductor compiles a tiny module on CPU: a minute on 2 cores with a cold cache
def test_the_compiled_call_sees_one_memory_layout_whatever_the_batch():
    """On CUDA, clips of one frame size leave preprocessing channels-last and mixed or padded ones contiguous; dynamo
    guards on strides, so each new layout would be a recompilation on the model thread while requests wait."""
    forward = CompiledForward(_Clips(), torch.device("cpu"))
    forward.sizes = [2, 4]
    for rows in (2, 4):
        forward(torch.rand(rows, 3, 3, 8, 8))
    before, recompiles = graphs_compiled(), counters["recompiles"].total()
    channels_last = torch.rand(4, 3, 8, 8, 3).permute(0, 1, 4, 2, 3)  # what CUDA's resize of HWC frames gives
    assert not channels_last.is_contiguous()
    for batch in (channels_last, channels_last[:3], channels_last[:2], torch.rand(3, 3, 3, 8, 8)):
        assert torch.equal(forward(batch), batch.flatten(2).amax(2))
    assert graphs_compiled() == before and counters["recompiles"].total() == recompiles


class _Clips(torch.nn.Module):
    """Something per clip and frame, small enough to compile in seconds."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(2).amax(2)


def test_batches_are_padded_to_the_next_warmed_size():
    forward = CompiledForward(torch.nn.Identity(), torch.device("cpu"))
    forward.sizes = [1, 2, 4, 8]
    assert [forward.padded_size(rows) for rows in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert forward.padded_size(9) == 9, "beyond the largest warmed size a batch runs as it is"


@pytest.mark.slow
def test_compiled_output_and_embedding_equal_eager(compiled, runner):
    compiled_runner, _ = compiled
    clips = [compiled_runner.prepare(clip) for clip in clips_of_mixed_sizes(4, runner.frames_per_clip)]
    expected, embeddings = runner.predict_embedded(clips)[:2]
    np.testing.assert_allclose(compiled_runner.predict(clips), expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(compiled_runner.predict(clips[:2]), expected[:2], rtol=0, atol=TOLERANCE)
    compiled_embeddings = compiled_runner.predict_embedded(clips[:3])[1]  # padded to 4: the same pass gives both
    np.testing.assert_allclose(compiled_embeddings, embeddings[:3], rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_padding_returns_exactly_the_callers_rows(compiled, runner):
    compiled_runner, _ = compiled
    clips = [compiled_runner.prepare(clip) for clip in clips_of_mixed_sizes(3, runner.frames_per_clip)]
    for rows in (1, 3):  # padded to 2 and to 4
        probabilities = compiled_runner.predict(clips[:rows])
        assert probabilities.shape == (rows, 43)
        np.testing.assert_allclose(probabilities, runner.predict(clips[:rows]), rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_warm_up_compiles_every_size_and_serving_compiles_nothing(compiled, runner):
    compiled_runner, compiled_in_warm_up = compiled
    assert compiled_in_warm_up >= 1 and compiled_runner.compiled.sizes == WARMED
    before = graphs_compiled()
    blank = [np.zeros((64, 32, 3), dtype=np.uint8)] * runner.frames_per_clip
    for rows in range(1, max(WARMED) + 1):
        compiled_runner.predict([compiled_runner.prepare(blank) for _ in range(rows)])
    assert graphs_compiled() == before, "a batch size the warm-up did not compile"


@cuda
def test_cuda_graphs_replay_the_warmed_sizes(tiny_checkpoint, runner):
    on_gpu = ModelRunner.load(make_settings(tiny_checkpoint, device="cuda", compile="on"))
    assert on_gpu.compiled is not None and on_gpu.compiled.cuda_graphs
    on_gpu.warm_up([1, 2, 4])
    warmed = graphs_compiled()
    clips = clips_of_mixed_sizes(3, on_gpu.frames_per_clip)
    expected = runner.predict([runner.prepare(clip) for clip in clips])
    for _ in range(3):  # replays, each after the previous batch's outputs were copied out
        got = on_gpu.predict([on_gpu.prepare(clip) for clip in clips])
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-2)  # bf16 autocast, as in test_inference
    one_size = [np.zeros((64, 32, 3), dtype=np.uint8)] * on_gpu.frames_per_clip  # channels-last out of the resize
    for rows in range(1, 5):  # padded and not, one frame size and mixed: no request compiles
        on_gpu.predict([on_gpu.prepare(one_size) for _ in range(rows)])
        on_gpu.predict([on_gpu.prepare(clip) for clip in clips_of_mixed_sizes(rows, on_gpu.frames_per_clip)])
    assert graphs_compiled() == warmed, "a request's batch compiled a graph that warm-up did not"
