"""Opening the store's database: the URL as configured, an engine, and Alembic's migrations run on it.

An empty database is migrated to the latest revision at start (each instance sharing a PostgreSQL store may do so:
Alembic's version table makes a second run a no-op).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
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


def open_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        # WAL: searches read while a track is written; NORMAL sync is durable across a process crash under WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Brings the database to the latest revision (creates the tables in an empty one)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
