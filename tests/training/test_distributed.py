"""Multi-process training through torchrun: 2 CPU processes on the gloo backend."""

import json
import subprocess

import pytest
from safetensors import safe_open

from model import load_checkpoint
from training.resume import STATE_FILE

from .conftest import PYTHON, read_tensors, subprocess_env

pytestmark = [pytest.mark.slow]


def test_two_process_gloo_run_trains_resumes_and_writes_one_checkpoint(small_synthetic, tmp_path):
    out = tmp_path / "ddp"
    command = [
        PYTHON,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.train",
        "--data",
        str(small_synthetic),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    stopped = subprocess.run(
        command + ["--max-steps", "2"], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "stopped after 2 steps" in stopped.stdout and not (out / "last.safetensors").exists()
    result = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Only the main process reports and writes.
    assert result.stdout.count("epoch 1:") == 1 and result.stdout.count("calibrated on") == 1, result.stdout
    assert "on 2 process(es)" in result.stdout
    written = sorted(p.name for p in out.iterdir())
    assert written == ["best.safetensors", "last.safetensors", "log.jsonl", STATE_FILE]
    checkpoint = load_checkpoint(out / "last.safetensors")
    settings = json.loads((small_synthetic / "synthetic.json").read_text())
    validation = checkpoint.metadata["provenance"]["validation"]["tracklets"]
    # Global batches of 2 processes x 3 clips over the training split less validation; the last incomplete one
    # is dropped.
    assert checkpoint.metadata["provenance"]["global_step"] == (settings["train_tracklets"] - validation) // 6
    assert checkpoint.metadata["provenance"]["settings"]["world_size"] == 2
    (line,) = [json.loads(text) for text in (out / "log.jsonl").read_text().splitlines()]
    # Every validation tracklet evaluated exactly once, across the two shards.
    assert line["metrics"]["num_samples"] == validation
    assert "calibrated" in load_checkpoint(out / "best.safetensors").metadata["provenance"]["test_metrics"]
    with safe_open(str(out / STATE_FILE), framework="pt") as handle:
        assert {"rng.cpu.0", "rng.cpu.1"} <= set(handle.keys())

    # Both processes' data order and RNG states were restored: the same weights as an uninterrupted run.
    command[command.index("--out") + 1] = str(tmp_path / "straight")
    straight = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    resumed = read_tensors(out / "last.safetensors")
    expected = read_tensors(tmp_path / "straight" / "last.safetensors")
    assert all((resumed[name] == expected[name]).all() for name in expected)
    (straight_line,) = [json.loads(text) for text in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert line["train_loss"] == pytest.approx(straight_line["train_loss"])  # the partial epoch counted once
