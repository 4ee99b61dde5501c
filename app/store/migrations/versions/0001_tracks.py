"""Tracks, with their attributes, and the models that produced them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Array = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("schema_name", sa.String(128), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("longest_track_s", sa.Double(), nullable=False),
    )
    op.create_index("uq_models_identity", "models", ["name", "version", "schema_name"], unique=True)
    op.create_table(
        "tracks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("model_id", Id, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("camera", sa.String(256), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("boxes", sa.JSON(), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("probabilities", Array, nullable=False),
        sa.Column("positives", Array, nullable=False),
        sa.Column("thumbnail", sa.String(64), nullable=True),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tracks_model_camera_seen", "tracks", ["model_id", "camera", "last_seen"])
    op.create_index("ix_tracks_model_seen", "tracks", ["model_id", "last_seen"])
    op.create_index("ix_tracks_seen", "tracks", ["last_seen"])


def downgrade() -> None:
    op.drop_table("tracks")
    op.drop_table("models")
