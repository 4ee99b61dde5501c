"""The documentation's pictures show what their captions' commands give today: each records a digest of what
decides its content (``docs/pictures.py``), and a change to any of it (the demo model, the scene generator, the
tracks pipeline, the drawing) without re-making the picture fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_annotated_picture_is_not_stale():
    result = subprocess.run(
        [sys.executable, "docs/pictures.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
