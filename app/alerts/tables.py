"""The alerts' tables: rules, the alerts they fired and the outbox of their deliveries. They share the track
store's database and metadata (one migration history); the Alembic revision ``alerts_rules_outbox`` creates them.

Times are naive UTC, as in the track store's tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..store.tables import Base, Id


class RuleRow(Base):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict] = mapped_column(JSON)  # the rule as created: search, schedule, webhook, mqtt
    secret: Mapped[str] = mapped_column(String(64))  # the webhook's HMAC key, handed out once
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # Once per track per rule, whichever instance or restart sees the track again.
        Index("uq_alerts_rule_track", "rule_id", "track_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[int] = mapped_column(Id)  # no foreign key: an alert outlives its rule's deletion
    rule_name: Mapped[str] = mapped_column(String(100))
    camera: Mapped[str] = mapped_column(String(256))
    track_key: Mapped[str] = mapped_column(String(128))  # "stream:<stream id>:<track id>" or "track:<stored id>"
    payload: Mapped[dict] = mapped_column(JSON)  # the track as it matched, and its times
    # The JPEG of the track's best crop so far: a live track has none stored yet when it fires. Alerts are few, so
    # a BLOB here costs less than a second file store.
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    fired_at: Mapped[datetime] = mapped_column(DateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)


class DeliveryRow(Base):
    """The outbox: one row per alert and channel (webhook, mqtt), written in the alert's transaction."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # "webhook" or "mqtt"
    target: Mapped[str] = mapped_column(String(2000))  # the URL, or the MQTT topic
    state: Mapped[str] = mapped_column(String(16))  # "pending", "delivered" or "failed"
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)  # also the claim's lease while one is under way
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
