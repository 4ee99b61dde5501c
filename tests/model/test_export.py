"""``python -m model.export``: the ONNX file computes the checkpoint's logits at any batch size and carries its
metadata; the paper-size preset exports too."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from model import create_model, get_config, load_checkpoint, load_schema, save_checkpoint
from model.backbone import file_sha256
from model.export import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME, main, read_onnx_metadata

LOGIT_TOLERANCE = 1e-4


def run_onnx(path, clips: torch.Tensor, outputs: tuple[str, ...] = (OUTPUT_NAME,)) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(outputs), {INPUT_NAME: clips.numpy()})


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_gives_torch_logits_and_embedding_at_any_batch_size(onnx_export, batch):
    checkpoint, onnx_file = onnx_export
    model = load_checkpoint(checkpoint).model
    clips = torch.randn(batch, 4, 3, 32, 32, generator=torch.manual_seed(batch))
    with torch.inference_mode():
        logits, embedding = model.forward_with_embedding(clips)
    got_logits, got_embedding = run_onnx(onnx_file, clips, (OUTPUT_NAME, EMBEDDING_NAME))
    np.testing.assert_allclose(got_logits, logits.numpy(), atol=LOGIT_TOLERANCE, rtol=0)
    np.testing.assert_allclose(got_embedding, embedding.numpy(), atol=LOGIT_TOLERANCE, rtol=0)


def test_the_file_carries_the_checkpoints_metadata_and_digest(onnx_export):
    checkpoint, onnx_file = onnx_export
    loaded = load_checkpoint(checkpoint)
    metadata = read_onnx_metadata(onnx_file)
    for key in ("schema", "thresholds", "temperatures", "preprocessing", "provenance", "config", "backbone"):
        assert metadata[key] == loaded.metadata[key], key
    assert metadata["provenance"]["model_card"] == "https://example.org/card"
    assert metadata["source"]["sha256"] == file_sha256(checkpoint)
    assert metadata["onnx"]["input"] == {"name": "frames", "shape": ["batch", 4, 3, 32, 32]}
    assert metadata["onnx"]["output"]["shape"] == ["batch", len(loaded.model.schema)]
    assert metadata["onnx"]["embedding"]["shape"] == ["batch", loaded.model.appearance_width]
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch axis is dynamic


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "nope.safetensors does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_the_paper_preset_exports_and_runs_in_onnx_runtime(tmp_path):
    """vtfpar-b16 (random CLIP ViT-B/16, built offline): logits within 1e-4, probabilities within 1e-3."""
    torch.manual_seed(0)
    model = create_model(get_config("vtfpar-b16", clip_weights=None), load_schema("mars"))
    checkpoint = tmp_path / "b16.safetensors"
    save_checkpoint(model, checkpoint)
    del model
    out = tmp_path / "b16.onnx"
    assert main([str(checkpoint), "--out", str(out), "--no-check"]) == 0
    model = load_checkpoint(checkpoint).model
    clips = torch.randn(2, 6, 3, 224, 224, generator=torch.manual_seed(0))
    with torch.inference_mode():
        expected = model(clips)
    [got] = run_onnx(out, clips)
    np.testing.assert_allclose(got, expected.numpy(), atol=LOGIT_TOLERANCE, rtol=0)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(got)), torch.sigmoid(expected), atol=1e-3, rtol=0)
