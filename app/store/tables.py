"""The track store's tables (SQLAlchemy 2). Alembic migrations (``migrations/``) create and change them; the
models here are what the queries are written against, and a test checks the two agree.

Times are naive UTC (``timestamp without time zone`` in PostgreSQL, ISO text in SQLite): both compare them in
order, and neither converts them behind the caller's back. Probabilities are read back as double precision in
both (JSON numbers written with Python's exact float repr), so that rankings computed by either database are the
same numbers.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Double, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite's rowid is a 64-bit INTEGER PRIMARY KEY only when declared exactly INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")
Array = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    """A model whose results are stored: its identity (name, version, schema), attribute names and thresholds,
    so that stored tracks keep their meaning after the service moves on to another model."""

    __tablename__ = "models"
    __table_args__ = (Index("uq_models_identity", "name", "version", "schema_name", unique=True),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    schema_name: Mapped[str] = mapped_column(String(128))
    attributes: Mapped[list] = mapped_column(JSON)  # [{"name", "group", "phrase", "threshold"}] in column order
    # The longest track stored for it (last_seen - first_seen): lets a search bound last_seen from above too.
    longest_track_s: Mapped[float] = mapped_column(Double)


class TrackRow(Base):
    __tablename__ = "tracks"
    __table_args__ = (
        # The search: one model, optionally one camera, a time window, most recent first.
        Index("ix_tracks_model_camera_seen", "model_id", "camera", "last_seen"),
        Index("ix_tracks_model_seen", "model_id", "last_seen"),
        # Retention purge and erasure by time, across models.
        Index("ix_tracks_seen", "last_seen"),
        # The thumbnail sweep: which of a folder's pictures a row still names.
        Index(
            "ix_tracks_thumbnail",
            "thumbnail",
            sqlite_where=text("thumbnail IS NOT NULL"),
            postgresql_where=text("thumbnail IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    camera: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(16))  # "upload" or "stream"
    track_id: Mapped[int] = mapped_column(BigInteger)  # the tracker's (or the client's) id, per recording
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    boxes: Mapped[list] = mapped_column(JSON)  # [[seconds after first_seen, x0, y0, x1, y1], ...]
    windows: Mapped[int] = mapped_column(Integer)  # clips the model saw, fused into the probabilities
    # Each attribute's fused probability and the model's decision, in the schema's column order: arrays in the row
    # (not a row each), so that one track is one row to insert, and a search reads the window's rows and nothing
    # else. JSONB in PostgreSQL (binary: element access without parsing text).
    probabilities: Mapped[list] = mapped_column(Array)
    positives: Mapped[list] = mapped_column(Array)
    thumbnail: Mapped[str | None] = mapped_column(String(64))  # file name under <data_dir>/thumbnails
    stored_at: Mapped[datetime] = mapped_column(DateTime)
