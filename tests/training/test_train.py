"""The trainer end to end on CPU with the tiny preset: checkpoints, log, evaluation, resume, errors."""

import json
import subprocess

import pytest

from model import load_checkpoint
from model.checkpoint import read_metadata
from training.evaluate import evaluate
from training.evaluate import main as evaluate_main
from training.resume import STATE_FILE, load_state
from training.train import main as train_main

from .conftest import PYTHON, read_tensors, subprocess_env

TINY = ["--preset", "tiny", "--batch-size", "4", "--eval-batch-size", "8", "--warmup-epochs", "1", "--lr", "2e-3"]


def train(data, out, *extra):
    return train_main(["--data", str(data), "--out", str(out), *TINY, *extra])


def log_lines(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_selects_on_validation_calibrates_best_and_scores_test_once(small_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(small_synthetic, out, "--epochs", "2", "--val-fraction", "0.25") == 0
    lines = log_lines(out)
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:
        assert line["train_loss"] > 0 and line["eval_loss"] > 0 and line["eval_split"] == "validation"
        assert set(line["metrics"]["groups"]) >= {"motion", "pose", "top color"}
        assert len(line["metrics"]["attributes"]) == 43
    assert lines[1]["lr"] < lines[0]["lr"] or lines[0]["lr"] < 2e-3  # warm-up then cosine

    last = load_checkpoint(out / "last.safetensors")
    provenance = last.metadata["provenance"]
    assert provenance["epoch"] == 2 and last.model.schema.name == "mars" and last.model.calibration is None
    assert provenance["metrics"]["protocol_f1"] == lines[1]["headline"]["protocol_f1"]
    assert provenance["selected_on"] == "validation" and provenance["settings"]["val_fraction"] == 0.25
    validation = provenance["validation"]
    assert validation["fraction"] == 0.25 and validation["tracklets"] == lines[0]["metrics"]["num_samples"]

    best = load_checkpoint(out / "best.safetensors")
    best_epoch = best.metadata["provenance"]["epoch"]
    assert lines[best_epoch - 1]["best"] is True
    record = best.model.calibration
    assert record["objective"] == "f1" and record["fit_on"]["tracklets_sha256"] == validation["tracklets_sha256"]
    test_metrics = best.metadata["provenance"]["test_metrics"]
    assert set(test_metrics) == {"default_threshold", "calibrated"}
    # The stand-alone evaluator reproduces the training-time numbers: the validation split is rebuilt from the
    # data and the seed, and the uncalibrated decisions are the ones epochs were scored with.
    on_validation = evaluate(str(out / "best.safetensors"), str(small_synthetic), split="validation", calibrated=False)
    logged = lines[best_epoch - 1]["metrics"]
    assert on_validation["metrics"]["protocol"] == pytest.approx(logged["protocol"])
    assert on_validation["metrics"]["mA"] == pytest.approx(logged["mA"])
    on_test = evaluate(str(out / "best.safetensors"), str(small_synthetic))
    assert on_test["calibrated"] and on_test["thresholds"] == best.model.thresholds
    assert on_test["metrics"]["protocol"]["f1"] == pytest.approx(test_metrics["calibrated"]["protocol_f1"])
    printed = capsys.readouterr().out
    assert "epoch 2:" in printed and "calibrated on" in printed and "test split (calibrated; reporting only)" in printed


def test_select_on_test_is_the_authors_behaviour(small_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(small_synthetic, out, "--epochs", "1", "--val-fraction", "0", "--select-on", "test") == 0
    [line] = log_lines(out)
    assert line["eval_split"] == "test"
    best = load_checkpoint(out / "best.safetensors")
    assert best.metadata["provenance"]["validation"] is None and best.model.calibration is None
    assert best.model.thresholds == [0.45] * 43
    with pytest.raises(SystemExit):
        train(small_synthetic, tmp_path / "other", "--epochs", "1", "--val-fraction", "0")
    assert "--select-on validation needs a validation split" in capsys.readouterr().err


def test_resume_after_an_interrupted_run_gives_the_same_weights(small_synthetic, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train(small_synthetic, straight, "--epochs", "2") == 0
    # 6 steps per epoch (25 training tracklets once validation is held out, batch 4): stop in the middle of
    # epoch 2, with intermediate states saved on the way.
    assert train(small_synthetic, interrupted, "--epochs", "2", "--max-steps", "10", "--save-every-steps", "4") == 0
    assert not (interrupted / "last.safetensors").exists() or len(log_lines(interrupted)) == 1
    assert load_state(interrupted / STATE_FILE).progress.global_step == 10
    assert train(small_synthetic, interrupted, "--epochs", "2", "--resume") == 0

    for name in ("last.safetensors", "best.safetensors"):
        expected, resumed = read_tensors(straight / name), read_tensors(interrupted / name)
        assert expected.keys() == resumed.keys()
        different = [key for key in expected if not (expected[key] == resumed[key]).all()]
        assert not different, f"resumed weights differ in {name}: {different[:5]}"
    # The calibration and test scores of best.safetensors are the same too.
    assert read_metadata(interrupted / "best.safetensors") == read_metadata(straight / "best.safetensors")
    strip = [{k: v for k, v in line.items() if k != "time_s"} for line in log_lines(straight)]
    assert [{k: v for k, v in line.items() if k != "time_s"} for line in log_lines(interrupted)] == strip
    assert (interrupted / STATE_FILE).stat().st_mode & 0o777 == 0o644  # written like a checkpoint


def test_resume_refuses_what_it_cannot_continue(small_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train(small_synthetic, out, "--epochs", "1", "--resume")
    assert exit_info.value.code == 2 and f"no resume state {out / STATE_FILE}" in capsys.readouterr().err
    assert train(small_synthetic, out, "--epochs", "1", "--max-steps", "2") == 0
    with pytest.raises(SystemExit):
        train(small_synthetic, out, "--epochs", "1")
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(small_synthetic, out, "--epochs", "3", "--resume")
    assert "started with different settings: ['epochs']" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_dataset_path_exits_like_argparse_naming_the_file(tmp_path):
    (tmp_path / "mars_attributes.csv").write_text("person-id,camera\n1,2\n")
    (tmp_path / "bbox_train").mkdir()
    (tmp_path / "bbox_test").mkdir()
    result = subprocess.run(
        [PYTHON, "-m", "training.train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", "tiny"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 2
    assert "usage: vtfpar train" in result.stderr
    assert f"{tmp_path / 'mars_attributes.csv'}:1: header lacks column(s)" in result.stderr


def test_evaluator_cli_passes_and_json(small_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(small_synthetic, out, "--epochs", "1") == 0
    capsys.readouterr()
    report = tmp_path / "metrics.json"
    assert (
        evaluate_main(
            [
                "--checkpoint",
                str(out / "last.safetensors"),
                "--data",
                str(small_synthetic),
                "--passes",
                "3",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "random_subset sampling" in printed and "std over passes" in printed and "bottom color" in printed
    result = json.loads(report.read_text())
    assert result["passes"] == 3 and len(result["per_pass"]) == 3
    assert 0 <= result["metrics"]["protocol"]["accuracy"] <= 1 and result["std"]["mA"] >= 0
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(small_synthetic)])
    assert exit_info.value.code == 2 and "does not exist" in capsys.readouterr().err
