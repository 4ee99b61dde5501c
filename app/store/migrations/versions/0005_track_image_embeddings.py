"""CLIP image embeddings of stored tracks (free-text search), one row per track, with the model that made them.

Revision ID: track_image_embeddings
Revises: 0002_track_embeddings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "track_image_embeddings"
down_revision = "0002_track_embeddings"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "track_image_embeddings",
        sa.Column("track_id", Id, sa.ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_id", Id, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("camera", sa.String(256), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_track_image_embeddings_model", "track_image_embeddings", ["model_id", "track_id"])


def downgrade() -> None:
    op.drop_table("track_image_embeddings")
