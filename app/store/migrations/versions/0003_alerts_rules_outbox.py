"""Alert rules, the alerts they fired, and the outbox of their deliveries (webhook, MQTT).

Revision ID: alerts_rules_outbox
Revises: 0002_tracks_thumbnail_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "alerts_rules_outbox"
down_revision = "0002_tracks_thumbnail_index"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("rule_id", Id, nullable=False),
        sa.Column("rule_name", sa.String(100), nullable=False),
        sa.Column("camera", sa.String(256), nullable=False),
        sa.Column("track_key", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
    )
    op.create_index("uq_alerts_rule_track", "alerts", ["rule_id", "track_key"], unique=True)
    op.create_table(
        "alert_deliveries",
        sa.Column("id", Id, primary_key=True),
        sa.Column("alert_id", Id, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
