"""The wheels ``benchmarks/gpu_check.sh --fetch-wheels`` carries to a GPU machine that already has torch: every
package that pyproject.toml's dependencies (and the test runner) need, at the versions installed here, less what
such a machine provides. Derived, not listed by hand, so a dependency added to pyproject.toml is never missed.

    python -m benchmarks.gpu_wheels        # one name==version a line

The walk follows installed packages' requirements (markers evaluated for the GPU machine's Python) and stops at the
provided ones, whose own requirements that machine has too.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# What the workplace's lent GPU machines bring (a Python 3.12 image), with everything these require.
PROVIDED = ("torch", "torchvision", "timm", "triton", "safetensors", "httpx", "prometheus-client", "uvloop")
TARGET_PYTHON = "3.12"
# The CUDA tests run under pytest, with the project's pytest options (its timeout).
TEST_RUNNER = ("pytest", "pytest-timeout")


def _requirements(name: str, extras: frozenset[str], environment: dict[str, str]) -> list[Requirement]:
    """What the installed ``name`` requires for these extras (``uvicorn[standard]`` brings httptools, ...)."""
    needed = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**environment, "extra": e}) for e in {"", *extras}):
            needed.append(requirement)
    return needed


def _closure(roots: list[Requirement], stop: set[str], environment: dict[str, str]) -> set[str]:
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name in stop:
            continue
        seen.add((name, extras))
        todo += [(canonicalize_name(r.name), frozenset(r.extras)) for r in _requirements(name, extras, environment)]
    return {name for name, _ in seen}


def _environment() -> dict[str, str]:
    return {**default_environment(), "python_version": TARGET_PYTHON, "python_full_version": f"{TARGET_PYTHON}.0"}


def needed(requirements: list[str]) -> set[str]:
    """The (canonical) names of these requirements and of everything they require, as installed here."""
    return _closure([Requirement(text) for text in requirements], set(), _environment())


def provided() -> set[str]:
    """What the GPU machine has: ``PROVIDED`` and what they require."""
    return needed(list(PROVIDED))


def wheels() -> list[str]:
    """``name==version`` of every package to carry, sorted."""
    environment = _environment()
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    roots = [Requirement(text) for text in [*dependencies, *TEST_RUNNER]]
    return sorted(f"{name}=={metadata.version(name)}" for name in _closure(roots, provided(), environment))


if __name__ == "__main__":
    sys.stdout.write("\n".join(wheels()) + "\n")
