"""Firing and delivering without a model: live tracks' events handed to the alerts as a stream manager would,
the outbox drained to a webhook receiver on loopback. A track fires once per rule, only once its attributes have
settled; a receiver that is down gets every alert once it is back; a restart between firing and delivery loses
nothing; a delivery that keeps failing ends failed with its last error."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from app.alerts import AlertMetrics, Alerts, AlertStore, RuleSpec
from app.settings import Settings
from app.store import AttributeSpec, ModelSpec, TrackStore
from app.streams.tracks import Seen, TrackState
from benchmarks.alert_receivers import Receiver

MODEL = ModelSpec(
    "m", "v1", "mars", (AttributeSpec("top_red", "top", "red top", 0.5), AttributeSpec("hat", "hat", "hat", 0.5))
)
RED_TOP = {"name": "red top", "search": {"attributes": "top_red"}}


def event(kind: str, track_id: int, windows: int, p_red: float, stream: str = "s1") -> SimpleNamespace:
    now = datetime.now(UTC)
    track = TrackState(stream, "gate-3", track_id, Seen(0.0, now), Seen(1.0, now), (1, 2, 3, 4), windows, (p_red, 0.1))
    return SimpleNamespace(kind=kind, track=track)


def make_alerts(tmp_path, receiver: Receiver | None = None, **settings) -> Alerts:
    targets = (f"http://127.0.0.1:{receiver.port}/hooks/",) if receiver else ()
    values = dict(data_dir=tmp_path, alert_min_windows=3, webhook_targets=targets, webhook_retry_max_s=0.2)
    engine = TrackStore.open(None, tmp_path).engine  # migrated: the alerts' tables too
    return Alerts(AlertStore(engine), MODEL, Settings(**{**values, **settings}), AlertMetrics(CollectorRegistry()))


async def until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.05)
    return value


def test_a_track_fires_once_per_rule_after_its_attributes_settle_and_a_flicker_does_not_fire_twice(tmp_path):
    async def run():
        alerts = make_alerts(tmp_path)
        store = alerts.store
        red = await asyncio.to_thread(store.create_rule, RuleSpec(**RED_TOP))
        await asyncio.to_thread(store.create_rule, RuleSpec(name="no hat", search={"exclude": "hat"}))
        await alerts.start()
        # Track 1: matches from its first window, but fires only at the third; then flickers off and on.
        for windows, p in [(1, 0.9), (2, 0.9), (3, 0.8), (4, 0.2), (5, 0.9), (6, 0.9)]:
            alerts.stream_event(event("track_update", 1, windows, p))
        alerts.stream_event(event("track_end", 1, 6, 0.9))
        # Track 2: ends after one window: settled by its end.
        alerts.stream_event(event("track_update", 2, 1, 0.9))
        alerts.stream_event(event("track_end", 2, 1, 0.9))
        # Track 3: never red.
        for windows in (1, 2, 3, 4):
            alerts.stream_event(event("track_update", 3, windows, 0.1))
        alerts.stream_event(event("track_end", 3, 4, 0.1))
        await alerts.stop()
        return red, await asyncio.to_thread(store.alerts, 50)

    red, fired = asyncio.run(run())
    by_rule = sorted((a.rule_name, a.payload["track"]["track_id"]) for a in fired)
    assert by_rule == [("no hat", 1), ("no hat", 2), ("no hat", 3), ("red top", 1), ("red top", 2)]
    first = next(a for a in fired if a.rule_id == red.id and a.payload["track"]["track_id"] == 1)
    assert first.payload["track"]["windows"] == 3  # the window that settled it, not the first one
    assert first.camera == "gate-3" and first.deliveries == []


def test_a_receiver_down_for_a_while_gets_every_alert_once_it_is_back(tmp_path):
    receiver = Receiver()

    async def run():
        alerts = make_alerts(tmp_path, receiver)
        rule = await asyncio.to_thread(store_rule, alerts, receiver)
        receiver.secret = rule.secret
        await alerts.start()
        for track in range(1, 6):
            alerts.stream_event(event("track_end", track, 2, 0.9))
        await until(lambda: all_attempted(alerts, 5, 2), 10, "five alerts, two failed attempts each")
        receiver.start()  # back
        await until(lambda: len(receiver.received) >= 5, 15, "every alert delivered")
        await asyncio.sleep(1.5)  # anything sent twice would arrive by now
        await alerts.stop()
        return await asyncio.to_thread(alerts.store.alerts, 50)

    try:
        fired = asyncio.run(run())
    finally:
        receiver.stop()
    assert sorted(receiver.ids()) == sorted(a.id for a in fired) and len(fired) == 5
    assert all(valid for _, _, valid in receiver.received)
    assert all(d.state == "delivered" and d.attempts >= 3 and d.last_error is None for a in fired for d in a.deliveries)


def store_rule(alerts: Alerts, receiver: Receiver):
    return alerts.store.create_rule(RuleSpec(**RED_TOP, webhook=receiver.url))


def all_attempted(alerts: Alerts, count: int, attempts: int) -> bool:
    """Every one of ``count`` alerts has fired and been tried ``attempts`` times (under load they fire one by one)."""
    fired = alerts.store.alerts(50)
    deliveries = [d for a in fired for d in a.deliveries]
    return len(fired) == count and len(deliveries) == count and all(d.attempts >= attempts for d in deliveries)


def test_a_restart_between_firing_and_delivery_loses_nothing(tmp_path):
    receiver = Receiver()

    async def fire_then_stop():
        alerts = make_alerts(tmp_path, receiver)
        rule = await asyncio.to_thread(store_rule, alerts, receiver)
        await alerts.start()
        alerts.stream_event(event("track_end", 7, 3, 0.9))
        await until(lambda: all_attempted(alerts, 1, 1), 10, "a failed attempt")
        await alerts.stop()
        return rule

    async def restart():
        alerts = make_alerts(tmp_path, receiver)
        await alerts.start()
        await until(lambda: receiver.received, 15, "the delivery after the restart")
        alerts.stream_event(event("track_end", 7, 3, 0.9))  # the same track again: fired already
        await asyncio.sleep(1.5)
        await alerts.stop()
        return await asyncio.to_thread(alerts.store.alerts, 50)

    rule = asyncio.run(fire_then_stop())
    receiver.secret = rule.secret
    receiver.start()
    try:
        fired = asyncio.run(restart())
    finally:
        receiver.stop()
    assert len(fired) == 1 and receiver.ids() == [fired[0].id] and receiver.received[0][2]
    assert fired[0].deliveries[0].state == "delivered"


def test_a_delivery_that_keeps_failing_ends_failed_with_its_last_error(tmp_path):
    receiver = Receiver()  # never started

    async def run():
        alerts = make_alerts(tmp_path, receiver, webhook_max_attempts=2)
        await asyncio.to_thread(store_rule, alerts, receiver)
        await alerts.start()
        alerts.stream_event(event("track_end", 1, 3, 0.9))
        await until(lambda: [a for a in alerts.store.alerts(5) if a.deliveries[0].state == "failed"], 10, "failed")
        await alerts.stop()
        return await asyncio.to_thread(alerts.store.alerts, 5), alerts.store.pending()

    (alert,), pending = asyncio.run(run())
    assert alert.deliveries[0].attempts == 2 and "ConnectError" in (alert.deliveries[0].last_error or "")
    assert pending == 0
