"""An index on tracks.thumbnail, for the sweep that removes pictures no row names.

Revision ID: 0002_tracks_thumbnail_index
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_tracks_thumbnail_index"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    named = sa.text("thumbnail IS NOT NULL")
    op.create_index("ix_tracks_thumbnail", "tracks", ["thumbnail"], sqlite_where=named, postgresql_where=named)


def downgrade() -> None:
    op.drop_index("ix_tracks_thumbnail", table_name="tracks")
