import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow]


def test_summary_cli_prints_one_json_object():
    result = subprocess.run(
        [sys.executable, "-m", "vtfpar", "summary", "--preset", "tiny", "--attributes", "duke", "--frames", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["num_attributes"] == 36 and summary["frames"] == 3
    assert summary["trainable_params"] > 0 and summary["frozen_params"] > 0 and summary["gflops_per_clip"] > 0


def test_summary_cli_fails_clearly_on_unknown_preset():
    result = subprocess.run(
        [sys.executable, "-m", "model", "summary", "--preset", "nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "unknown preset" in result.stderr
