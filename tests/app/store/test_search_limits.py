"""A search is bounded: past its time limit the database statement itself stops (SQLite's progress handler,
PostgreSQL's statement_timeout) with a 503 search_timeout, and when its client leaves the statement is cancelled
at once; either way the store's connection is left fit for the next search."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from app.errors import ErrorCode, ServiceError
from app.store import Search, SearchLimit

from .conftest import BACKENDS
from .test_store import MODEL, tracks

# A condition that keeps the database busy for many seconds: what a huge scan would do.
SLOW = {
    "sqlite": "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000000) "
    "SELECT count(*) FROM c) > 0 AND ",
    "postgres": "(SELECT pg_sleep(20)) IS NOT NULL AND ",
}


@pytest.fixture
def slow_store(open_store, request):
    backend = request.param
    store = open_store(backend)
    store.add(MODEL, tracks(20, thumbnails=False))
    deadline = time.monotonic() + 30
    while not store.columns.ready:  # built before the database is slowed down
        assert time.monotonic() < deadline
        time.sleep(0.01)

    def slow(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT") and "FROM tracks" in statement and slow.on:
            statement = statement.replace("WHERE ", "WHERE " + SLOW[backend], 1)
        return statement, parameters

    slow.on = True
    event.listen(store.engine, "before_cursor_execute", slow, retval=True)
    yield store, slow


@pytest.mark.parametrize("slow_store", BACKENDS, indirect=True)
def test_a_search_past_its_time_limit_is_stopped_with_a_503(slow_store):
    store, slow = slow_store
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        store.search(Search(required=("female",)), MODEL, SearchLimit(0.5))
    assert raised.value.code is ErrorCode.SEARCH_TIMEOUT
    assert time.monotonic() - started < 5  # the statement stopped, not just the wait for it
    slow.on = False
    assert len(store.search(Search(required=("female",)), MODEL, SearchLimit(10)).tracks) > 0


@pytest.mark.parametrize("slow_store", BACKENDS, indirect=True)
def test_a_search_whose_client_left_is_cancelled(slow_store):
    store, slow = slow_store
    limit = SearchLimit(60)
    threading.Timer(0.3, limit.cancel).start()
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        store.search(Search(required=("female",)), MODEL, limit)
    assert raised.value.code is ErrorCode.CLIENT_DISCONNECTED
    assert time.monotonic() - started < 5
    slow.on = False
    assert len(store.search(Search(), MODEL, SearchLimit(10)).tracks) == 20


def test_a_search_that_waited_past_its_limit_does_not_start(open_store):
    store = open_store("sqlite")
    limit = SearchLimit(0.01)
    time.sleep(0.02)  # queued behind other work on the store's pool
    with pytest.raises(ServiceError) as raised:
        store.search(Search(), MODEL, limit)
    assert raised.value.code is ErrorCode.SEARCH_TIMEOUT
