"""Opening the store's database: the URL as configured, an engine, and Alembic's migrations run on it.

An empty database is migrated to the latest revision at start. Several instances may start at once on one
database (Ray replicas, compose scale-out, Kubernetes): the migration runs under a lock (a PostgreSQL advisory lock,
SQLite's exclusive transaction), so one migrates and the others wait, then find it done (Alembic's version table).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def store_url(database_url: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL: ``postgresql://`` means psycopg 3 (SQLAlchemy's default driver for it is psycopg2,
    which is not installed); unset means the embedded SQLite file under ``data_dir``."""
    if database_url is None:
        return f"sqlite:///{data_dir / 'tracks.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def open_engine(url: str, pool_size: int = 5) -> Engine:
    """``pool_size``: connections kept for the store's worker threads (PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=5000")
        # WAL: searches read while a track is written; NORMAL sync is durable across a process crash under WAL.
        _write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _write_ahead_log(cursor, wait_s: float = 10.0) -> None:
    """Switches the file to WAL (kept in the file: once done, a read). Instances starting at once on a new file
    race for the switch, and SQLite answers "database is locked" at once, busy timeout or not: try again."""
    deadline = time.monotonic() + wait_s
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# The advisory lock's key: any fixed 64-bit number that other software on the database is unlikely to take.
MIGRATION_LOCK = 0x7674_6670_6172_0001


def migrate(engine: Engine) -> None:
    """Brings the database to the latest revision (creates the tables in an empty one), holding the migration lock
    for the whole transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # Released at commit; PostgreSQL's DDL is transactional, so a waiter sees all of the tables or none.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        elif engine.dialect.name == "sqlite":
            # Python's sqlite3 runs DDL outside transactions unless one is begun explicitly; EXCLUSIVE makes the
            # other instances wait (busy_timeout) until the tables exist.
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
