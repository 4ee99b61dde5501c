"""Decisions users can trust: thresholds and temperatures fit on a validation split carved by identity, and
never on the test split."""

import shutil

import numpy as np
import pytest

from model import load_checkpoint
from model.decisions import positives
from training import calibrate as calibrate_module
from training import train as train_module
from training.calibrate import main as calibrate_main
from training.calibration import fit_decisions, fit_temperature, fit_threshold
from training.data.records import DatasetError, Tracklet
from training.data.sources import load_dataset
from training.train import main as train_main
from training.validation import rebuild_split, split_validation

TINY = ["--preset", "tiny", "--batch-size", "4", "--eval-batch-size", "8", "--warmup-epochs", "1", "--lr", "2e-3"]


def objective(probs, labels, threshold, name):
    decided, actual = positives(probs, [threshold]), labels == 1
    tp, fp = np.sum(decided & actual), np.sum(decided & ~actual)
    fn, tn = np.sum(~decided & actual), np.sum(~decided & ~actual)
    if name == "f1":
        return 2 * tp / (2 * tp + fp + fn)
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


def test_thresholds_land_on_the_known_optimum_of_each_objective():
    # Two positives among ten. F1 is 2/3 with the top clip alone and 2/3 with the top four (equal: the higher
    # threshold wins); balanced accuracy is best (0.875) with the top four.
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert fit_threshold(probs, labels, "f1") == pytest.approx(0.85)
    assert fit_threshold(probs, labels, "balanced_accuracy") == pytest.approx(0.55)
    assert objective(probs, labels, 0.55, "balanced_accuracy") == pytest.approx(0.875)
    # Equal probabilities cannot be split: the best reachable point takes both 0.7s.
    assert fit_threshold(np.array([0.7, 0.7, 0.3]), np.array([1, 0, 0]), "f1") == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["f1", "balanced_accuracy"])
def test_thresholds_match_a_brute_force_search(name):
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 60)
        labels[:2] = [0, 1]
        probs = np.clip(np.round(0.35 * labels + rng.random(60) * 0.65, 2), 0.01, 0.99)  # ties on purpose
        values = np.unique(np.r_[0.0, probs, 1.0])
        candidates = (values[1:] + values[:-1]) / 2
        best = max(objective(probs, labels, t, name) for t in candidates)
        assert objective(probs, labels, fit_threshold(probs, labels, name), name) == pytest.approx(best)


SATURATED = {
    # Anti-correlated, the top clip saturated: "none positive" (0.5) ties "all positive" (0.5); no threshold
    # below 1 keeps a 1.0 negative, so clipping "none positive" to 1 - 1e-6 made exactly the 1.0 positive (0.0).
    "none positive, top at 1.0": ([1.0, 0.2], [0, 1], "balanced_accuracy"),
    "none positive, several at 1.0": ([1.0, 1.0, 0.6, 0.3], [0, 0, 1, 0], "balanced_accuracy"),
    # The mirror: "all positive" is best, but the bottom clip is 0.0, which no threshold above 0 makes positive.
    "all positive, bottom at 0.0": ([0.9, 0.0, 0.0], [0, 1, 1], "f1"),
    "all positive, bottom at 0.0, balanced": ([0.9, 0.4, 0.0], [1, 1, 0], "balanced_accuracy"),
}


@pytest.mark.parametrize("case", sorted(SATURATED))
def test_saturated_probabilities_get_the_best_decisions_a_threshold_inside_0_1_can_make(case):
    """The threshold's own decisions on the validation clips score the best any threshold in (0, 1) scores:
    the fit never settles on an operating point the threshold cannot make."""
    values, labels, name = SATURATED[case]
    probs, labels = np.array(values, dtype=np.float32), np.array(labels)
    threshold = fit_threshold(probs, labels, name)
    assert 0.0 < threshold < 1.0
    grid = np.r_[np.unique(probs.astype(np.float64)), np.linspace(1e-9, 1 - 1e-9, 2001)]
    best = max(objective(probs, labels, t, name) for t in grid if 0.0 < t < 1.0)
    assert objective(probs, labels, threshold, name) == pytest.approx(best)


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_temperature_fit_recovers_the_temperature_labels_were_drawn_with(temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-logits / temperature))).astype(np.uint8)
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.08)


def test_an_attribute_with_one_class_on_validation_keeps_the_default():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (50, 2)).astype(np.float32)
    labels = np.stack([(logits[:, 0] > 0.5).astype(np.uint8), np.zeros(50, np.uint8)], axis=1)
    fit = fit_decisions(logits, labels, objective="f1", temperature=True, default_threshold=0.45)
    assert fit.kept_default == [1] and fit.thresholds[1] == 0.45 and fit.temperatures[1] == 1.0
    # Separable: the fitted threshold decides every clip right, whatever the temperature did to the scale.
    tempered = 1 / (1 + np.exp(-logits[:, 0] / fit.temperatures[0]))
    assert np.array_equal(positives(tempered, [fit.thresholds[0]]), labels[:, 0] == 1)


def tracklets(identities):
    return [
        Tracklet(name=f"{identity}-{i}", identity=identity, labels=np.zeros(2, np.uint8))
        for identity, count in identities.items()
        for i in range(count)
    ]


def test_validation_split_holds_out_whole_identities_deterministically():
    data = tracklets({f"p{k:02d}": 1 + k % 3 for k in range(40)})
    split = split_validation(data, 0.1, seed=7)
    held_out = {t.identity for t in split.validation}
    assert len(held_out) == 4 and held_out.isdisjoint(t.identity for t in split.train)
    assert len(split.train) + len(split.validation) == len(data)
    assert split.record() == split_validation(list(reversed(data)), 0.1, seed=7).record()  # order-free
    assert split.record()["tracklets_sha256"] != split_validation(data, 0.1, seed=8).record()["tracklets_sha256"]
    assert split_validation(data, 0.0, seed=7).validation == [] and split_validation(data, 1.0, 7).train == []
    with pytest.raises(DatasetError, match="keep some to train on"):
        split_validation(tracklets({"only": 3}), 0.5, seed=0)


def spy_on_the_fit(monkeypatch, module):
    """Record the tracklets behind every array of logits that reaches the threshold/temperature fit."""
    real_predict = module.predict
    behind, fitted = {}, []

    def predict(model, dataset, ctx, **options):
        logits, labels = real_predict(model, dataset, ctx, **options)
        behind[id(logits)] = {t.name for t in dataset.tracklets}
        return logits, labels

    def watched_fit(logits, labels, **options):
        fitted.append(behind[id(logits)])
        return fit_decisions(logits, labels, **options)

    monkeypatch.setattr(module, "predict", predict)
    monkeypatch.setattr(calibrate_module, "fit_decisions", watched_fit)
    return fitted


def test_test_tracklets_never_reach_calibration(small_synthetic, tmp_path, monkeypatch, capsys):
    data = load_dataset(small_synthetic)
    test_names = {t.name for t in data.test}
    validation = {t.name for t in split_validation(data.train, 0.25, 12240321).validation}

    fitted = spy_on_the_fit(monkeypatch, train_module)
    out = tmp_path / "run"
    assert train_main(["--data", str(small_synthetic), "--out", str(out), *TINY, "--epochs", "1"] + [
        "--val-fraction", "0.25", "--seed", "12240321", "--calibrate-temperature",
    ]) == 0  # fmt: skip
    assert fitted == [validation] and not validation & test_names

    fitted = spy_on_the_fit(monkeypatch, calibrate_module)
    recalibrated = tmp_path / "balanced.safetensors"
    arguments = ["--checkpoint", str(out / "best.safetensors"), "--data", str(small_synthetic)]
    assert calibrate_main([*arguments, "--out", str(recalibrated), "--objective", "balanced_accuracy"]) == 0
    assert fitted == [validation]
    record = load_checkpoint(recalibrated).model.calibration
    assert record["objective"] == "balanced_accuracy" and record["fit_on"]["tracklets"] == len(validation)
    assert record["fit_on"]["checkpoint_sha256"] == load_checkpoint(out / "best.safetensors").digest
    capsys.readouterr()

    # On the data it trained on, a checkpoint is calibrated on its own validation split and no other.
    with pytest.raises(SystemExit):
        calibrate_main([*arguments, "--out", str(tmp_path / "x.safetensors"), "--val-fraction", "0.5"])
    assert "another split would reuse tracklets it trained on" in capsys.readouterr().err
    # A copy of that data elsewhere is the same data, recognised by its identities rather than its path: calibrated
    # on the same validation split, and on no other.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(small_synthetic, elsewhere)
    fitted = spy_on_the_fit(monkeypatch, calibrate_module)
    moved = ["--checkpoint", str(recalibrated), "--data", str(elsewhere), "--out", str(tmp_path / "moved.safetensors")]
    assert calibrate_main(moved) == 0 and fitted == [validation]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        calibrate_main([*moved, "--val-fraction", "0.5"])
    assert "another split would reuse tracklets it trained on" in capsys.readouterr().err


def test_the_data_a_checkpoint_trained_on_is_recognised_by_its_identities_wherever_it_lies():
    data = tracklets({f"p{k:02d}": 2 for k in range(20)})
    split = split_validation(data, 0.2, seed=3)
    provenance = {"validation": split.record(), "settings": {"data": "/datasets/mars"}}
    moved = rebuild_split(provenance, "/mnt/copy-of-mars", list(reversed(data)))
    assert moved.record() == split.record()
    with pytest.raises(DatasetError, match="another split would reuse tracklets it trained on"):
        rebuild_split(provenance, "/mnt/copy-of-mars", data, fraction=0.5)
    # Other people: split as the user says, and only when asked to.
    other = tracklets({f"q{k:02d}": 2 for k in range(20)})
    with pytest.raises(DatasetError, match="was trained on other data"):
        rebuild_split(provenance, "/mnt/other", other)
    assert rebuild_split(provenance, "/mnt/other", other, fraction=1.0).train == []
