"""The re-identification protocol: query and gallery from different cameras, rank-1 and mAP by cosine similarity,
tracklets without a camera in their name refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.data.records import DatasetError, Tracklet
from training.reid import camera_of, cross_camera_metrics


def test_rank1_and_map_count_only_other_cameras():
    identities = np.array(["a", "a", "b", "b", "c"])
    cameras = np.array(["1", "2", "1", "2", "1"])
    features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6], [1.0, 0.1]])
    result = cross_camera_metrics(features, identities, cameras)
    # a@1: gallery b@2 (0.8), a@2 (0.6) -> AP 1/2. a@2: b@1 (0.8), c@1 (0.68), a@1 (0.6) -> AP 1/3.
    # b@1: a@2, b@2 -> AP 1/2. b@2: c@1 (0.86), a@1 (0.8), b@1 (0.6) -> AP 1/3. c: no other camera saw it.
    assert result["queries"] == 4
    assert result["rank1"] == 0.0
    assert result["mAP"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2 + 1 / 3) / 4)
    assert cross_camera_metrics(features[[0, 1]], identities[[0, 1]], cameras[[0, 1]])["rank1"] == 1.0


def test_cameras_come_from_mars_names():
    assert camera_of(Tracklet("0007C3T0002", "0007", np.zeros(1))) == "3"
    with pytest.raises(DatasetError, match="no camera"):
        camera_of(Tracklet("walker-7", "0007", np.zeros(1)))
    with pytest.raises(DatasetError, match="two cameras"):
        cross_camera_metrics(np.eye(2), np.array(["a", "b"]), np.array(["1", "2"]))


def test_evaluate_reports_the_protocol_for_a_dataset(tmp_path, capsys):
    from app.settings import DEMO_CHECKPOINT
    from training.evaluate import main
    from training.synthetic.tracklets import generate

    generate(tmp_path / "data", tracklets=60, seed=3, frames_per_tracklet=(6, 6), size=(64, 32), test_fraction=0.9)
    out = tmp_path / "metrics.json"
    assert (
        main(["--checkpoint", str(DEMO_CHECKPOINT), "--data", str(tmp_path / "data"), "--reid", "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())["reid"]
    assert set(report["rows"]) == {"embedding", "attribute logits", "colour histogram", "chance"}
    assert 30 < report["tracklets"] <= 60 and report["rows"]["embedding"]["queries"] > 0
    assert all(0 <= row["rank1"] <= 1 and 0 < row["mAP"] <= 1 for row in report["rows"].values())
    assert "query and gallery from different cameras" in capsys.readouterr().out


def test_the_candidates_table_scores_the_stored_embedding_as_the_candidate_it_was_chosen_as(tmp_path):
    """`python -m training.reid_candidates`, the table docs/search.md quotes: the network's embedding is the
    4-stripe candidate with the logits at a quarter, and the baseline row is evaluate --reid's attribute logits."""
    from app.settings import DEMO_CHECKPOINT
    from model import load_checkpoint
    from training.data.sources import load_dataset
    from training.reid import reid_report
    from training.reid_candidates import measure
    from training.synthetic.tracklets import generate

    data = generate(tmp_path / "data", tracklets=60, seed=3, frames_per_tracklet=(6, 6), size=(64, 32))
    model = load_checkpoint(DEMO_CHECKPOINT).model
    tracklets = load_dataset(data).test
    rows = measure(model, tracklets, torch.device("cpu"), batch_size=16, precision="fp32")
    chosen = rows["fused visual, 4 horizontal stripes + 0.25 x standardised logits"]
    assert rows["the appearance embedding (VTFPAR._appearance)"] == chosen and chosen["width"] == 171
    protocol = reid_report(model, tracklets, torch.device("cpu"), precision="fp32")["rows"]
    assert {k: rows["calibrated logits"][k] for k in ("rank1", "mAP")} == pytest.approx(
        {k: protocol["attribute logits"][k] for k in ("rank1", "mAP")}
    )
    assert {k: chosen[k] for k in ("rank1", "mAP")} == pytest.approx(
        {k: protocol["embedding"][k] for k in ("rank1", "mAP")}
    )
