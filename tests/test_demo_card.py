"""The demo model's calibrated decisions and its model card. Crosses packages on purpose: the demo checkpoint is
the service's asset, calibration and the card are training's commands.

Calibrated on synthetic identities it never saw (the training split of a fresh set), the demo model decides at
least as well as with the fixed 0.45 on the held-out identities of that set; and ``vtfpar report`` writes every
file of the card, with exactly the numbers ``vtfpar evaluate --json`` gives (with ``--reid``, its re-identification
table too).
"""

from __future__ import annotations

import json

import pytest

from app.settings import DEMO_CHECKPOINT
from model import load_checkpoint
from training.calibrate import main as calibrate_main
from training.card.report import CARD, FILES, HEADLINE_ROWS
from training.card.report import main as report_main
from training.data.sources import load_dataset
from training.evaluate import main as evaluate_main
from training.evaluate import predict_split
from training.synthetic.tracklets import generate

pytestmark = [pytest.mark.slow]

FRESH_SEED = 20261201  # the demo trained on seed 7
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def calibrated_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_card")
    data = generate(
        root / "data",
        tracklets=320,
        seed=FRESH_SEED,
        frames_per_tracklet=(8, 8),
        size=(64, 32),
        priors="uniform",
        test_fraction=0.5,
    )
    checkpoint = root / "demo-calibrated.safetensors"
    arguments = ["--checkpoint", str(DEMO_CHECKPOINT), "--data", str(data), "--out", str(checkpoint)]
    assert calibrate_main([*arguments, "--val-fraction", "1", "--temperature"]) == 0
    return data, checkpoint


def test_calibrated_demo_decides_no_worse_than_the_fixed_threshold_on_held_out_identities(calibrated_demo):
    data, checkpoint = calibrated_demo
    fit_on = load_checkpoint(checkpoint).model.calibration["fit_on"]
    dataset = load_dataset(data)
    assert fit_on["tracklets"] == len(dataset.train)  # the whole training split of the fresh set, no test clip
    predictions = predict_split(str(checkpoint), str(data))
    calibrated = predictions.result()["metrics"]
    fixed = predictions.result(calibrated=False)["metrics"]
    print(
        f"held-out protocol F1 {calibrated['protocol']['f1']:.3f} calibrated vs {fixed['protocol']['f1']:.3f} at "
        f"0.45; mA {calibrated['mA']:.3f} vs {fixed['mA']:.3f}; ECE {calibrated['reliability']['ece']:.3f} vs "
        f"{fixed['reliability']['ece']:.3f}"
    )
    assert calibrated["protocol"]["f1"] >= fixed["protocol"]["f1"]


def test_report_writes_every_file_with_the_numbers_of_vtfpar_evaluate(calibrated_demo, tmp_path, capsys):
    data, checkpoint = calibrated_demo
    out = tmp_path / "card"
    assert report_main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--reid"]) == 0
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(PNG_SIGNATURE), name

    evaluated = {}
    for variant, extra in (("calibrated", ["--reid"]), ("default_threshold", ["--uncalibrated"])):
        path = tmp_path / f"{variant}.json"
        arguments = ["--checkpoint", str(checkpoint), "--data", str(data), "--json", str(path), *extra]
        assert evaluate_main(arguments) == 0
        evaluated[variant] = json.loads(path.read_text())
    capsys.readouterr()
    assert json.loads((out / "metrics.json").read_text()) == evaluated

    card = (out / CARD).read_text()
    calibrated, fixed = evaluated["calibrated"]["metrics"], evaluated["default_threshold"]["metrics"]
    headline = {
        "protocol_accuracy": (fixed["protocol"]["accuracy"], calibrated["protocol"]["accuracy"]),
        "protocol_f1": (fixed["protocol"]["f1"], calibrated["protocol"]["f1"]),
        "mA": (fixed["mA"], calibrated["mA"]),
        "ece": (fixed["reliability"]["ece"], calibrated["reliability"]["ece"]),
    }
    for key, (before, after) in headline.items():
        assert f"| {HEADLINE_ROWS[key]} | {before:.3f} | {after:.3f} |" in card, key
    for name, scores in calibrated["attributes"].items():
        row = f"| {name} | {scores['group']} | {scores['positives']} | {scores['threshold']:.3f} |"
        assert row in card, name
    assert f"{int(calibrated['num_samples'])} tracklets" in card and "## Limits" in card
    reid = evaluated["calibrated"]["reid"]["rows"]
    for name, row in reid.items():  # the re-identification table, the stored embedding first
        assert f"| {row['rank1']:.3f} | {row['mAP']:.3f} |" in card, name
    assert card.index("| appearance embedding (") < card.index("calibrated attribute logits |")
