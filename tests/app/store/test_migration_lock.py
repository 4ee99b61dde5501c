"""Several instances started at once on one empty database (Ray replicas, compose scale-out, Kubernetes): every one
comes up, five times in a row, on SQLite and on PostgreSQL. Without the migration lock one or two of three crashed
(``alembic_version`` already exists, a ``pg_type`` unique violation)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import BACKENDS

INSTANCES = 3
RUNS = 5
# An instance: imported once (the slow part), then opens the store each time it is handed a database, so that the
# three open it within milliseconds of each other.
INSTANCE = textwrap.dedent(
    """
    import sys, traceback
    from pathlib import Path
    from app.store import TrackStore
    for line in sys.stdin:
        url, data_dir = line.split()
        try:
            store = TrackStore.open(None if url == "-" else url, Path(data_dir))
            store.models()
            store.close()
            print("ready", flush=True)
        except Exception:
            print(traceback.format_exc().replace(chr(10), " | "), flush=True)
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_instances_on_an_empty_database_all_come_up(backend, tmp_path, request):
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    instances = [
        subprocess.Popen(
            [sys.executable, "-c", INSTANCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(INSTANCES)
    ]
    try:
        for run in range(RUNS):
            if backend == "postgres":
                url = request.getfixturevalue("postgres").create_database(f"migrate{run}")
            else:
                url = "-"
            data_dir = tmp_path / f"run{run}"
            for instance in instances:
                assert instance.stdin is not None
                instance.stdin.write(f"{url} {data_dir}\n")
                instance.stdin.flush()
            answers = [instance.stdout.readline().strip() for instance in instances if instance.stdout]
            assert answers == ["ready"] * INSTANCES, f"run {run + 1}: {answers}"
    finally:
        for instance in instances:
            assert instance.stdin is not None
            instance.stdin.close()
            instance.wait(timeout=30)
