"""The decision rule every answer uses (model/decisions.py), and the calibration a checkpoint carries for it."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import CheckpointError, load_checkpoint, load_schema, save_checkpoint
from model.decisions import one_of_winners, positives, probabilities


def test_probabilities_are_the_sigmoid_of_logits_over_temperatures():
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.bfloat16)
    assert torch.equal(probabilities(logits), torch.sigmoid(logits.float()))
    tempered = probabilities(logits, [2.0, 0.5, 1.0])
    assert tempered.dtype == torch.float32
    assert torch.allclose(tempered, torch.sigmoid(torch.tensor([[1.0, -2.0, 0.5]])))


def test_positive_iff_above_the_threshold_and_the_first_of_equals_wins():
    schema = load_schema("mars")
    probs = np.full(len(schema), 0.2, dtype=np.float32)
    age = next(g for g in schema.groups if g.name == "age").columns
    probs[list(age)] = [0.125, 0.75, 0.75, 0.25]  # exact in fp32
    thresholds = np.full(len(schema), 0.45)
    thresholds[age[1]] = 0.75  # equal is not above
    decided = positives(probs, thresholds)
    assert decided[list(age)].tolist() == [False, False, True, False]
    assert one_of_winners(probs, schema)["age"] == age[1]
    rows = one_of_winners(np.stack([probs, probs[::-1]]), schema)["age"]
    assert rows.shape == (2,) and rows[0] == age[1]


def _edit(path, out, edit):
    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = json.loads(handle.metadata()["vtfpar"])
    edit(metadata)
    save_file(tensors, str(out), metadata={"vtfpar": json.dumps(metadata)})
    return out


def test_calibration_round_trips_through_the_checkpoint_and_bad_values_are_refused(tiny_model, tmp_path, clips):
    path = tmp_path / "calibrated.safetensors"
    tiny_model.temperatures = [1.0] * 42 + [2.0]
    tiny_model.calibration = {"objective": "f1", "fit_on": {"split": "validation", "tracklets": 7}}
    try:
        save_checkpoint(tiny_model, path)
    finally:
        tiny_model.temperatures, tiny_model.calibration = None, None
    loaded = load_checkpoint(path).model
    assert loaded.temperatures[-1] == 2.0 and loaded.calibration["fit_on"]["tracklets"] == 7
    with torch.no_grad():
        logits = loaded(clips)
    assert torch.allclose(probabilities(logits, loaded.temperatures)[:, -1], torch.sigmoid(logits[:, -1] / 2))

    for bad in ([1.0] * 42, [1.0] * 42 + [0.0], [1.0] * 42 + [float("inf")]):
        broken = _edit(path, tmp_path / "bad.safetensors", lambda m, bad=bad: m.update(temperatures=bad))
        with pytest.raises(CheckpointError, match="one finite temperature > 0 per attribute"):
            load_checkpoint(broken)
    broken = _edit(path, tmp_path / "bad.safetensors", lambda m: m.update(calibration=[1]))
    with pytest.raises(CheckpointError, match="'calibration' must be a JSON object"):
        load_checkpoint(broken)
