"""The service depends on model/ only: app -> model <- training."""

from __future__ import annotations

import ast
from pathlib import Path

import app

APP_DIR = Path(app.__file__).parent


def test_app_never_imports_training():
    offenders = []
    for path in APP_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            )
            offenders += [f"{path.relative_to(APP_DIR)}: {n}" for n in names if n.split(".")[0] == "training"]
    assert offenders == []
