"""A search's bounds: a time limit, and a switch for when its client leaves. Both stop the database statement
itself (SQLite's progress handler, PostgreSQL's statement_timeout and query cancel), not just the wait for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import ErrorCode, ServiceError

PROGRESS_STEPS = 10_000  # SQLite virtual-machine steps between two looks at the clock (well under a millisecond)


class SearchLimit:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self._cancelled = threading.Event()
        self._running = None  # the driver connection running a statement, for a cancel from another thread
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """The client left (called from the event loop): the statement under way stops."""
        self._cancelled.set()
        with self._lock:
            if self._running is not None and hasattr(self._running, "cancel_safe"):
                self._running.cancel_safe()  # psycopg 3; SQLite's progress handler sees the flag itself

    def stopped(self) -> bool:
        return self._cancelled.is_set() or time.monotonic() > self.deadline

    def check(self) -> None:
        if self._cancelled.is_set():
            raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the client left during the search")
        if time.monotonic() > self.deadline:
            raise ServiceError(ErrorCode.SEARCH_TIMEOUT, self._timeout_message())

    def _timeout_message(self) -> str:
        return f"the search ran longer than {self.seconds:g} s: narrow it (camera, time)"

    @contextmanager
    def bounding(self, connection: Connection) -> Iterator[None]:
        """Runs the block's statements under the limit; an interrupted statement becomes the limit's error."""
        self.check()  # it may have waited its time out in the store's queue
        driver = connection.connection.driver_connection
        assert driver is not None  # a connection in use has its driver's
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            driver.set_progress_handler(lambda: int(self.stopped()), PROGRESS_STEPS)
        else:
            left_ms = max(1, int((self.deadline - time.monotonic()) * 1000))
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {left_ms}")
        with self._lock:
            self._running = driver
        try:
            yield
        except DBAPIError as exc:
            self.check()  # stopped by us: the limit's error; otherwise the database's own
            if _interrupted(exc):  # the server's timer can fire a hair before this process's clock says so
                raise ServiceError(ErrorCode.SEARCH_TIMEOUT, self._timeout_message()) from None
            raise
        finally:
            with self._lock:
                self._running = None
            if sqlite:
                driver.set_progress_handler(None, 0)


def _interrupted(error: DBAPIError) -> bool:
    """A statement stopped by its time limit: PostgreSQL's query_canceled (57014), SQLite's interrupt (only this
    limit's progress handler interrupts a search)."""
    return getattr(error.orig, "sqlstate", None) == "57014" or "interrupted" in str(error.orig)
