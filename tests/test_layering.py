"""Dependencies point one way, app -> model <- training, and the ``vtfpar`` command above all three: checked on the
source of every file of each package.

Every import counts wherever it sits (inside functions too): ``import x``, ``from x import y``, relative imports
resolved against the file's package, and ``importlib.import_module`` / ``__import__`` with a literal name. A
relative import that climbs out of its top-level package is an offence in itself, whatever it reaches.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "app": {"training", "vtfpar"},
    "training": {"app", "vtfpar"},
    "model": {"app", "training", "vtfpar"},
    "benchmarks": {"training", "tests", "vtfpar"},
}
DYNAMIC_IMPORTS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    line: int
    name: str  # absolute dotted name
    leaves_package: bool = False  # a relative import that climbs above its top-level package

    @property
    def top(self) -> str:
        return self.name.split(".")[0]


def _relative(node: ast.ImportFrom, package: tuple[str, ...]) -> list[Import]:
    kept = len(package) - (node.level - 1)  # `from .` is the file's own package, each extra dot one level up
    base = [*package[: max(kept, 0)], *([node.module] if node.module else [])]
    return [Import(node.lineno, ".".join([*base, alias.name]), leaves_package=kept < 1) for alias in node.names]


def _dynamic(node: ast.Call) -> list[Import]:
    function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    if function not in DYNAMIC_IMPORTS or not node.args:
        return []
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
        return [Import(node.lineno, first.value)]
    return []


def imports_of(source: str, package: tuple[str, ...]) -> list[Import]:
    """What ``source``, a module of ``package`` (``("app", "api")`` for ``app/api/routes.py``), imports."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(Import(node.lineno, node.module or ""))
        elif isinstance(node, ast.ImportFrom):
            found += _relative(node, package)
        elif isinstance(node, ast.Call):
            found += _dynamic(node)
    return found


def package_imports(package: str) -> dict[str, list[Import]]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return {
        str(path.relative_to(REPO)): imports_of(path.read_text(), path.relative_to(REPO).parent.parts) for path in files
    }


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layering_allows(package):
    per_file = package_imports(package)
    offenders = [
        f"{path}:{found.line}: {found.name}" + (" (relative import out of the package)" if found.leaves_package else "")
        for path, imports in per_file.items()
        for found in imports
        if found.top in FORBIDDEN[package] or found.leaves_package
    ]
    assert offenders == [], f"{package}/ may not import {sorted(FORBIDDEN[package])}"
    if package != "model":  # the scan sees the imports that are allowed, so an empty result means something
        assert any(found.top == "model" for imports in per_file.values() for found in imports)


@pytest.mark.parametrize(
    "source,package,name,leaves",
    [
        ("import training.loss", ("app",), "training.loss", False),
        ("from training import loss", ("app", "api"), "training", False),
        ("def f():\n    from app.settings import Settings", ("training",), "app.settings", False),
        ("from .schema import load_schema", ("model",), "model.schema.load_schema", False),
        ("from ..errors import ErrorCode", ("app", "api"), "app.errors.ErrorCode", False),
        ("from ..training import loss", ("app",), "training.loss", True),
        ("from ... import training", ("app", "api"), "training", True),
        ("importlib.import_module('training.metrics')", ("app",), "training.metrics", False),
        ("__import__('app')", ("model",), "app", False),
    ],
)
def test_the_scan_resolves_every_kind_of_import(source, package, name, leaves):
    assert [(found.name, found.leaves_package) for found in imports_of(source, package)] == [(name, leaves)]
