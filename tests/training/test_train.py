"""The trainer end to end on CPU with the tiny preset: checkpoints, log, evaluation, resume, errors."""

import json
import subprocess

import pytest

from model import load_checkpoint
from training.evaluate import evaluate
from training.evaluate import main as evaluate_main
from training.resume import STATE_FILE
from training.train import main as train_main

from .conftest import PYTHON, read_tensors, subprocess_env

TINY = ["--preset", "tiny", "--batch-size", "4", "--eval-batch-size", "8", "--warmup-epochs", "1", "--lr", "2e-3"]


def train(data, out, *extra):
    return train_main(["--data", str(data), "--out", str(out), *TINY, *extra])


def log_lines(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_writes_loadable_checkpoints_and_a_log(small_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(small_synthetic, out, "--epochs", "2") == 0
    lines = log_lines(out)
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:
        assert line["train_loss"] > 0 and line["eval_loss"] > 0
        assert set(line["metrics"]["groups"]) >= {"motion", "pose", "top color"}
        assert len(line["metrics"]["attributes"]) == 43
    assert lines[1]["lr"] < lines[0]["lr"] or lines[0]["lr"] < 2e-3  # warm-up then cosine

    last = load_checkpoint(out / "last.safetensors")
    assert last.metadata["provenance"]["epoch"] == 2 and last.model.schema.name == "mars"
    assert last.metadata["provenance"]["metrics"]["protocol_f1"] == lines[1]["headline"]["protocol_f1"]
    best = load_checkpoint(out / "best.safetensors")
    best_epoch = best.metadata["provenance"]["epoch"]
    assert lines[best_epoch - 1]["best"] is True
    # The stand-alone evaluator reproduces the training-time evaluation of that checkpoint.
    result = evaluate(str(out / "best.safetensors"), str(small_synthetic))
    logged = lines[best_epoch - 1]["metrics"]
    assert result["metrics"]["protocol"] == pytest.approx(logged["protocol"])
    assert result["metrics"]["mA"] == pytest.approx(logged["mA"])
    assert "epoch 2:" in capsys.readouterr().out


def test_resume_after_an_interrupted_run_gives_the_same_weights(small_synthetic, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train(small_synthetic, straight, "--epochs", "2") == 0
    # 8 steps per epoch (32 training tracklets, batch 4): stop in the middle of epoch 2, with intermediate
    # states saved on the way.
    assert train(small_synthetic, interrupted, "--epochs", "2", "--max-steps", "10", "--save-every-steps", "4") == 0
    assert not (interrupted / "last.safetensors").exists() or len(log_lines(interrupted)) == 1
    assert train(small_synthetic, interrupted, "--epochs", "2", "--resume") == 0

    expected, resumed = read_tensors(straight / "last.safetensors"), read_tensors(interrupted / "last.safetensors")
    assert expected.keys() == resumed.keys()
    different = [name for name in expected if not (expected[name] == resumed[name]).all()]
    assert not different, f"resumed weights differ: {different[:5]}"
    strip = [{k: v for k, v in line.items() if k != "time_s"} for line in log_lines(straight)]
    assert [{k: v for k, v in line.items() if k != "time_s"} for line in log_lines(interrupted)] == strip


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
    assert "usage: vtfpar-train" in result.stderr
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
