"""``python -m benchmarks.suite --preset tiny --quick``: the one benchmark command runs end to end (bare model,
decoding, two real servers under HTTP load, the free-model server) and writes the documented keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_suite_writes_every_documented_key(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "benchmarks.suite", "--preset", "tiny", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())

    sizes = [str(size) for size in results["model"]["batch_sizes"]]
    assert sizes == ["1", "2", "4"] and results["model"]["mode"] == "eager" and results["model"]["compiled"] is None
    assert all(
        results["model"]["clips_per_s"][size] > 0 and results["model"]["ms_per_batch"][size] > 0 for size in sizes
    )
    onnx = results["model"]["onnx"]["providers"]["cpu"]  # the same model in ONNX Runtime, beside torch eager
    assert onnx["runtime"].startswith("onnxruntime") and all(onnx["clips_per_s"][size] > 0 for size in sizes)
    assert set(results["ratios"]["onnx_over_eager"]["cpu"]) == set(sizes)
    for name, batch in (("on", 4), ("off", 1)):
        serving = results["serving"][name]
        assert serving["max_batch_clips"] == batch
        assert set(serving["clips_per_s"]) == {"1", "4"} and all(v > 0 for v in serving["clips_per_s"].values())
        assert all(errors == {} for errors in serving["errors"].values()), serving["errors"]
        assert all(serving["p50_ms"][c] <= serving["p95_ms"][c] <= serving["p99_ms"][c] for c in ("1", "4"))
    assert results["serving"]["off"]["mean_batch"]["4"] == 1.0
    ratios = results["ratios"]
    assert ratios["served_over_bare"] > 0 and ratios["batching_gain"] > 0
    assert ratios["batching_gain_at_concurrency"] == 4
    assert 0 < results["cpu"]["event_loop_per_request"] < results["cpu_ms_per_request"]
    assert results["cpu"]["errors"] == 0 and results["cpu"]["requests"] == 60
    assert results["decode"]["frames_decoded"] >= results["decode"]["frames_sampled"] == 4
    assert results["machine"]["cores"] == os.cpu_count() and results["machine"]["gpu"] is None

    report = (tmp_path / "results.md").read_text()
    assert "| served / bare model" in report and "| batching | concurrency | clips/s |" in report
    assert "## ONNX Runtime" in report
