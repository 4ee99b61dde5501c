"""Stores to test on: SQLite in a temporary folder, and PostgreSQL (a server started for the session, a new
database per store; skipped with the reason where PostgreSQL is not installed)."""

from __future__ import annotations

import itertools

import pytest

from app.store import TrackStore
from benchmarks.postgres import PostgresServer, missing

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    if (reason := missing()) is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def open_store(request, tmp_path):
    """open_store(backend) -> a new empty TrackStore on "sqlite" or "postgres"; open_store(backend, again=store)
    opens the same database as a restarted service would."""
    opened: list[TrackStore] = []
    urls: dict[int, str | None] = {}

    def make(backend: str, again: TrackStore | None = None) -> TrackStore:
        if again is not None:
            url = urls[id(again)]
        elif backend == "postgres":
            url = request.getfixturevalue("postgres").create_database(f"store{next(_databases)}")
        else:
            url = None
        store = TrackStore.open(url, tmp_path / backend)
        urls[id(store)] = url
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
