"""The alerts' database work: rules, fired alerts with their outbox rows (one transaction), claiming due
deliveries, recording their outcomes. Every method blocks: async callers run them on a thread.

Claiming is a compare-and-set on a delivery's ``next_attempt_at`` (moved forward by a lease), so that instances
sharing the database never send one delivery at the same time, and a delivery whose sender died is due again when
its lease runs out: at least once, never lost.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..store.records import aware_utc, naive_utc
from .rules import RuleSpec
from .tables import AlertRow, DeliveryRow, RuleRow

LEASE_S = 60.0  # a claimed delivery is due again after this if its sender never reported (it crashed)
ERROR_LENGTH = 500


def utcnow() -> datetime:
    return naive_utc(datetime.now(UTC))


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    spec: RuleSpec
    secret: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: str
    target: str
    state: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class Alert:
    id: int
    rule_id: int
    rule_name: str
    camera: str
    payload: dict  # {"track": ..., "source": ...}
    has_thumbnail: bool
    fired_at: datetime  # aware
    acknowledged_at: datetime | None
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass(frozen=True)
class Due:
    """A claimed delivery, with what sending it needs."""

    id: int
    channel: str
    target: str
    attempts: int  # including this one
    alert: Alert
    secret: str | None  # the rule's, None when the rule was deleted since


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine  # the track store's: its migrations create these tables too

    # Rules

    def create_rule(self, spec: RuleSpec) -> Rule:
        now = utcnow()
        values = dict(name=spec.name, spec=spec.model_dump(mode="json"), secret=secrets.token_hex(32))
        with self.engine.begin() as connection:
            rule_id = connection.execute(
                insert(RuleRow).values(**values, created_at=now, updated_at=now).returning(RuleRow.id)
            ).scalar_one()
        found = self.rule(rule_id)
        assert found is not None
        return found

    def rules(self) -> list[Rule]:
        with self.engine.connect() as connection:
            return [_rule(row) for row in connection.execute(select(RuleRow).order_by(RuleRow.id))]

    def rule(self, rule_id: int) -> Rule | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(RuleRow).where(RuleRow.id == rule_id)).first()
        return None if row is None else _rule(row)

    def replace_rule(self, rule_id: int, spec: RuleSpec) -> Rule | None:
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(RuleRow)
                .where(RuleRow.id == rule_id)
                .values(name=spec.name, spec=spec.model_dump(mode="json"), updated_at=utcnow())
            ).rowcount
        return self.rule(rule_id) if changed else None

    def delete_rule(self, rule_id: int) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(delete(RuleRow).where(RuleRow.id == rule_id)).rowcount > 0

    # Firing

    def fire(
        self,
        rule: Rule,
        camera: str,
        track_key: str,
        payload: dict,
        thumbnail: bytes | None,
        deliveries: list[tuple[str, str]],
    ) -> int | None:
        """Stores the alert and its outbox rows (channel, target) in one transaction; None when this rule has
        fired for this track already."""
        now = utcnow()
        alert = dict(
            rule_id=rule.id,
            rule_name=rule.name,
            camera=camera,
            track_key=track_key,
            payload=payload,
            thumbnail=thumbnail,
            fired_at=now,
        )
        try:
            with self.engine.begin() as connection:
                alert_id = connection.execute(insert(AlertRow).values(**alert).returning(AlertRow.id)).scalar_one()
                for channel, target in deliveries:
                    connection.execute(
                        insert(DeliveryRow).values(
                            alert_id=alert_id,
                            channel=channel,
                            target=target,
                            state="pending",
                            attempts=0,
                            next_attempt_at=now,
                        )
                    )
        except IntegrityError:  # uq_alerts_rule_track: fired before (another instance, or before a restart)
            return None
        return alert_id

    # The outbox

    def claim_due(self, limit: int, channels: tuple[str, ...]) -> list[Due]:
        now = utcnow()
        query = (
            select(DeliveryRow.id, DeliveryRow.next_attempt_at)
            .where(
                DeliveryRow.state == "pending", DeliveryRow.next_attempt_at <= now, DeliveryRow.channel.in_(channels)
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.id)
            .limit(limit)
        )
        claimed: list[int] = []
        with self.engine.begin() as connection:
            for row in connection.execute(query).all():
                taken = connection.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id == row.id, DeliveryRow.next_attempt_at == row.next_attempt_at)
                    .where(DeliveryRow.state == "pending")
                    .values(next_attempt_at=now + timedelta(seconds=LEASE_S), attempts=DeliveryRow.attempts + 1)
                ).rowcount
                if taken:
                    claimed.append(row.id)
        return self._due(claimed)

    def _due(self, ids: list[int]) -> list[Due]:
        if not ids:
            return []
        with self.engine.connect() as connection:
            deliveries = connection.execute(select(DeliveryRow).where(DeliveryRow.id.in_(ids))).all()
            alert_ids = {d.alert_id for d in deliveries}
            alerts = {r.id: _alert(r) for r in connection.execute(ALERTS.where(AlertRow.id.in_(alert_ids)))}
            rule_ids = {a.rule_id for a in alerts.values()}
            keys = select(RuleRow.id, RuleRow.secret).where(RuleRow.id.in_(rule_ids))
            secret_of: dict[int, str] = {row.id: row.secret for row in connection.execute(keys)}
        alert_of = {d.id: alerts[d.alert_id] for d in deliveries}
        return [
            Due(d.id, d.channel, d.target, d.attempts, alert_of[d.id], secret_of.get(alert_of[d.id].rule_id))
            for d in sorted(deliveries, key=lambda d: d.id)
        ]

    def delivered(self, delivery: int) -> None:
        self._set(delivery, state="delivered", delivered_at=utcnow(), last_error=None)

    def retry(self, delivery: int, error: str, after_s: float) -> None:
        at = utcnow() + timedelta(seconds=after_s)
        self._set(delivery, next_attempt_at=at, last_error=error[:ERROR_LENGTH])

    def failed(self, delivery: int, error: str) -> None:
        self._set(delivery, state="failed", last_error=error[:ERROR_LENGTH])

    def _set(self, delivery: int, **values) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(DeliveryRow).where(DeliveryRow.id == delivery).values(**values))

    def pending(self) -> int:
        """The outbox's depth: deliveries not yet delivered nor given up."""
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).where(DeliveryRow.state == "pending")).scalar_one()

    # Reading alerts

    def alerts(self, limit: int, before: int | None = None, after: int | None = None) -> list[Alert]:
        """Newest first (``before``: ids below it); with ``after``, oldest first from it (an events reader)."""
        query = ALERTS.limit(limit)
        if after is not None:
            query = query.where(AlertRow.id > after).order_by(AlertRow.id)
        else:
            query = query.order_by(AlertRow.id.desc())
            if before is not None:
                query = query.where(AlertRow.id < before)
        with self.engine.connect() as connection:
            alerts = [_alert(row) for row in connection.execute(query)]
            if not alerts:
                return []
            deliveries: dict[int, list[Delivery]] = {}
            rows = connection.execute(
                select(DeliveryRow).where(DeliveryRow.alert_id.in_([a.id for a in alerts])).order_by(DeliveryRow.id)
            )
            for row in rows:
                deliveries.setdefault(row.alert_id, []).append(_delivery(row))
        return [Alert(**{**vars(a), "deliveries": deliveries.get(a.id, [])}) for a in alerts]

    def alert(self, alert_id: int) -> Alert | None:
        found = self.alerts(1, after=alert_id - 1)
        return found[0] if found and found[0].id == alert_id else None

    def last_alert_id(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(AlertRow.id))).scalar() or 0

    def acknowledge(self, alert_id: int) -> Alert | None:
        with self.engine.begin() as connection:
            connection.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.acknowledged_at.is_(None))
                .values(acknowledged_at=utcnow())
            )
        return self.alert(alert_id)

    def thumbnail(self, alert_id: int) -> bytes | None:
        with self.engine.connect() as connection:
            return connection.execute(select(AlertRow.thumbnail).where(AlertRow.id == alert_id)).scalar()

    # Retention

    def purge(self, retention_days: float) -> int:
        """Alerts fired more than ``retention_days`` ago, with their deliveries, as the tracks' retention purges
        theirs (an alert keeps a person's picture); 0 days keeps everything."""
        if retention_days <= 0:
            return 0
        old = select(AlertRow.id).where(AlertRow.fired_at < naive_utc(utcnow() - timedelta(days=retention_days)))
        with self.engine.begin() as connection:
            connection.execute(delete(DeliveryRow).where(DeliveryRow.alert_id.in_(old)))
            return connection.execute(delete(AlertRow).where(AlertRow.id.in_(old))).rowcount


# An alert's columns, with whether it has a thumbnail instead of the picture itself.
ALERTS = select(
    *(column for column in AlertRow.__table__.c if column.name != "thumbnail"),
    AlertRow.thumbnail.is_not(None).label("has_thumbnail"),
)


def _rule(row) -> Rule:
    spec = RuleSpec.model_validate(row.spec)
    return Rule(row.id, row.name, spec, row.secret, aware_utc(row.created_at), aware_utc(row.updated_at))


def _alert(row) -> Alert:
    acknowledged = None if row.acknowledged_at is None else aware_utc(row.acknowledged_at)
    return Alert(
        row.id,
        row.rule_id,
        row.rule_name,
        row.camera,
        row.payload,
        bool(row.has_thumbnail),
        aware_utc(row.fired_at),
        acknowledged,
    )


def _delivery(row) -> Delivery:
    delivered = None if row.delivered_at is None else aware_utc(row.delivered_at)
    return Delivery(row.id, row.channel, row.target, row.state, row.attempts, row.last_error, delivered)
