"""``VTFPAR_CHECKPOINT=FILE.onnx``: the service runs the export with ONNX Runtime and answers as it does for the
checkpoint; a file that is not a usable export stops startup with a message naming the problem."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper

from app.api.schemas import PredictResponse
from app.inference import ModelRunner, StartupError, load_runner
from app.onnx_runner import CPU, CUDA, TENSORRT, OnnxRunner, cpu_fallback, providers_for
from app.settings import Settings
from benchmarks.media import decode_all, encode, frames, image_bytes
from benchmarks.servers import AppProcess
from model import sample_frame_indices

from .harness import make_settings, serving

PROBABILITY_TOLERANCE = 1e-3


def test_a_served_onnx_export_answers_as_the_checkpoint_does(onnx_export):
    """Videos and a tracklet, posted at once (batched), over HTTP: the probabilities the torch checkpoint gives
    for the same frames, its temperatures and thresholds applied."""
    checkpoint, onnx_file = onnx_export
    torch_runner = ModelRunner.load(make_settings(checkpoint))
    videos = [encode("mp4", frames(11 + i, seed=i)) for i in range(5)]
    tracklet = frames(3, width=40, height=72, seed=9)
    with serving(make_settings(onnx_file, max_batch_clips=4, max_batch_wait_ms=50)) as running:
        info = httpx.get(f"{running.url}/info").json()

        async def post_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
                uploads = [client.post("/predict", files={"video": ("c.mp4", video)}) for video in videos]
                crops = [("frames", (f"{i}.png", image_bytes(f, "PNG"))) for i, f in enumerate(tracklet)]
                return await asyncio.gather(*uploads, client.post("/predict", files=crops))

        responses = asyncio.run(post_all())
    assert info["runtime"].startswith("onnxruntime") and "CPUExecutionProvider" in info["runtime"]
    assert info["compiled"] is False and info["precision"] == "fp32"
    assert info["model"]["model_card"] == "https://example.org/card"
    assert [a["temperature"] for a in info["attributes"]] == pytest.approx(torch_runner.model.temperatures)
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    for response, clip in zip(responses, [*[decode_all(v) for v in videos], tracklet], strict=True):
        assert response.status_code == 200, response.text
        answer = PredictResponse.model_validate(response.json())
        indices = sample_frame_indices(len(clip), 4, "segment_middle")
        assert answer.input.frame_indices == indices
        expected = torch_runner.predict([torch_runner.prepare([clip[i] for i in indices])])[0]
        served = np.array([a.probability for a in answer.attributes])
        np.testing.assert_allclose(served, expected, atol=PROBABILITY_TOLERANCE, rtol=0)
        assert [a.threshold for a in answer.attributes] == pytest.approx(torch_runner.model.thresholds)
        assert answer.model.name == "tiny" and answer.model.version == digest[:12]


def test_the_runner_is_chosen_by_the_files_kind(onnx_export):
    checkpoint, onnx_file = onnx_export
    assert isinstance(load_runner(make_settings(checkpoint)), ModelRunner)
    runner = load_runner(make_settings(onnx_file))
    assert isinstance(runner, OnnxRunner) and runner.device.type == "cpu"
    assert runner.description.frames_per_clip == 4 and runner.description.image_size == 32


def test_the_onnx_runner_gives_the_checkpoints_appearance_embeddings(onnx_export):
    """What the service stores per track for similar search comes from the export as from the checkpoint."""
    checkpoint, onnx_file = onnx_export
    torch_runner, onnx_runner = load_runner(make_settings(checkpoint)), load_runner(make_settings(onnx_file))
    clips = [frames(4, width=40, height=72, seed=i) for i in range(3)]  # the tiny model's 4 frames each
    expected = torch_runner.predict_embedded([torch_runner.prepare(clip) for clip in clips])
    got = onnx_runner.predict_embedded([onnx_runner.prepare(clip) for clip in clips])
    np.testing.assert_allclose(got[0], expected[0], atol=PROBABILITY_TOLERANCE, rtol=0)
    assert got[1] is not None and expected[1] is not None
    np.testing.assert_allclose(got[1], expected[1], atol=1e-4, rtol=0)


@pytest.mark.e2e
def test_a_bad_onnx_file_stops_startup_with_a_clear_message(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07 not really a protobuf \xff\xff")
    env = {"VTFPAR_CHECKPOINT": str(bad), "VTFPAR_DEVICE": "cpu", "VTFPAR_LOG_JSON": "false"}
    with AppProcess(env, tmp_path / "app.log") as app:
        assert app.process.wait(timeout=120) == 3
    assert f"cannot load the model: {bad} is not a readable ONNX model" in app.output()


def test_an_onnx_model_without_vtfpar_metadata_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["frames"], ["logits"])],
        "other",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(StartupError, match="has no VTFPAR metadata"):
        load_runner(make_settings(path))


def test_torch_only_settings_are_refused_for_an_onnx_checkpoint(onnx_export):
    with pytest.raises(StartupError, match="runs in fp32"):
        load_runner(make_settings(onnx_export[1], precision="bf16"))
    with pytest.raises(StartupError, match="not compiled"):
        load_runner(make_settings(onnx_export[1], compile="on"))


def test_providers_follow_the_device_and_the_installed_build():
    shape = "6x3x224x224"
    assert providers_for(Settings(device="cpu"), [TENSORRT, CUDA, CPU], shape, 32) == [CPU]
    assert providers_for(Settings(device="auto"), [CPU], shape, 32) == [CPU]
    with pytest.raises(StartupError, match="install onnxruntime-gpu"):
        providers_for(Settings(device="cuda"), [CPU], shape, 32)
    assert providers_for(Settings(device="auto", onnx_tensorrt=False), [TENSORRT, CUDA, CPU], shape, 32) == [CUDA, CPU]
    tensorrt, *rest = providers_for(Settings(device="cuda"), [TENSORRT, CUDA, CPU], shape, 32)
    assert rest == [CUDA, CPU] and tensorrt[0] == TENSORRT
    assert tensorrt[1]["trt_profile_min_shapes"] == "frames:1x6x3x224x224"
    assert tensorrt[1]["trt_profile_max_shapes"] == "frames:32x6x3x224x224"


def test_tensorrt_engines_are_cached_where_the_settings_say(tmp_path):
    """A container's temporary folder dies with it, and rebuilding the engines takes minutes: the image points the
    cache at its /cache volume."""
    shape = "6x3x224x224"
    [(_, options), *_] = providers_for(Settings(onnx_tensorrt_cache_dir=tmp_path), [TENSORRT, CUDA, CPU], shape, 8)
    assert options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path)


def test_auto_says_loudly_when_a_gpu_host_serves_the_onnx_model_on_the_cpu(monkeypatch):
    auto = Settings(device="auto")
    assert cpu_fallback(auto, [TENSORRT, CUDA, CPU], [CUDA, CPU]) is None
    assert "could not start CUDAExecutionProvider" in cpu_fallback(auto, [CUDA, CPU], [CPU])
    assert cpu_fallback(Settings(device="cpu"), [CUDA, CPU], [CPU]) is None  # asked for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "install onnxruntime-gpu alone" in cpu_fallback(auto, [CPU], [CPU])


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers() or not torch.cuda.is_available(),
    reason="needs onnxruntime-gpu on a CUDA host",
)
@pytest.mark.parametrize("tensorrt", [False, True], ids=["cuda", "tensorrt"])
def test_gpu_providers_give_the_cpu_probabilities(onnx_export, tensorrt):
    """On a GPU host: the CUDA provider (and TensorRT, where ONNX Runtime can load it) within 1e-3 of torch on CPU."""
    checkpoint, onnx_file = onnx_export
    torch_runner = ModelRunner.load(make_settings(checkpoint))
    runner = load_runner(make_settings(onnx_file, device="cuda", onnx_tensorrt=tensorrt, max_batch_clips=4))
    assert runner.device.type == "cuda", runner.description.runtime
    clips = [frames(4, seed=seed) for seed in range(3)]
    runner.warm_up([1, 2, 4])
    expected = torch_runner.predict([torch_runner.prepare(clip) for clip in clips])
    got = runner.predict([runner.prepare(clip) for clip in clips])
    np.testing.assert_allclose(got, expected, atol=PROBABILITY_TOLERANCE, rtol=0)
