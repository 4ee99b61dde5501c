"""deploy/prometheus.yml as Prometheus itself reads it."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_promtool_accepts_the_scrape_config(tool):
    result = subprocess.run(
        [tool("promtool"), "check", "config", "deploy/prometheus.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
