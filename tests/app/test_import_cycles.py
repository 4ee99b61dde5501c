"""The service's modules import each other in one direction: no two modules (or longer chains) import each other,
wherever the import sits. A circle works only while its imports stay inside functions, and breaks at the first
import someone moves to the top of the file."""

import graphlib
from pathlib import Path

from tests.test_layering import package_imports


def _module(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_app_modules_import_each_other_in_no_circle():
    per_file = package_imports("app")
    modules = {_module(path) for path in per_file}
    graph: dict[str, set[str]] = {}
    for path, imports in per_file.items():
        module = _module(path)
        graph[module] = set()
        for found in imports:
            name = found.name  # "app.inference.ModelRunner" -> the module app.inference
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    assert "app.settings" in graph["app.inference"]  # the scan resolves the imports it checks
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as circle:
        raise AssertionError(f"modules that import each other: {' -> '.join(circle.args[1])}") from None
