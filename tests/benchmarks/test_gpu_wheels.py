"""benchmarks/gpu_check.sh carries the packages the CUDA tests and the suite import to a GPU machine that has only
torch and a few more: the list is derived from pyproject.toml, and checked here against what those modules import."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.gpu_wheels import PYPROJECT, needed, provided, wheels

REPO = Path(__file__).resolve().parents[2]
# What gpu_check.sh runs: its CUDA tests and the benchmark suite (which starts the service).
RUN_ON_THE_GPU = ["app.main", "benchmarks.suite", "tests.app.test_compiled", "tests.app.test_inference"]
IMPORTED = """
import importlib, json, sys
from importlib.metadata import packages_distributions
for module in sys.argv[1:]:
    importlib.import_module(module)
owners = packages_distributions()
print(json.dumps(sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})))
"""


def _carried() -> set[str]:
    return {canonicalize_name(line.split("==")[0]) for line in wheels()}


@pytest.mark.slow  # imports torch, the service and the suite in a fresh interpreter: about 20 s on 2 cores
def test_every_distribution_the_gpu_run_imports_is_carried_or_provided():
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *RUN_ON_THE_GPU], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {canonicalize_name(name) for name in json.loads(result.stdout.splitlines()[-1])}
    # The project itself travels as source; the optional extras (OpenCV and the tracker, ONNX, Ray, plots) and what
    # they bring are imported only where installed, and their tests skip, saying so.
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    optional = needed([r for name in ("scene", "onnx", "ray", "report") for r in extras[name]])
    missing = imported - _carried() - provided() - {"vtfpar-serve"} - optional
    assert not missing, f"imported on the GPU run but neither carried nor on the machine: {sorted(missing)}"


def test_the_carried_list_holds_every_dependency_of_pyproject_the_machine_lacks():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    needed = {canonicalize_name(Requirement(text).name) for text in dependencies} - provided()
    assert needed <= _carried(), sorted(needed - _carried())
    for name in ("regex", "sqlalchemy", "alembic", "mako", "ijson", "sse-starlette", "httptools"):
        assert name in _carried(), name


def test_gpu_check_fetches_the_derived_list():
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    assert "python3 -m benchmarks.gpu_wheels" in script and "WHEELS=(" not in script
