"""Alerts at run time: the rules held in memory, tracks matched as they settle (live) or are stored (uploads),
alerts fired into the database with their outbox rows, and the outbox drained to webhooks and MQTT.

A live track is matched from the moment its attributes are fused over ``VTFPAR_ALERT_MIN_WINDOWS`` windows, or when
it ends, whichever comes first; each rule fires once per track (held here while the track lives, and by the alerts
table's unique index across restarts and instances). Everything here runs on the event loop; database work on
threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
from datetime import UTC, datetime

import httpx
import numpy as np
from PIL import Image

from ..settings import Settings
from ..store import ModelSpec, NewTrack
from .metrics import AlertMetrics
from .mqtt import MqttPublisher
from .rules import Criteria, active, criteria, matches
from .store import Alert, AlertStore, Due, Rule
from .webhook import post

log = logging.getLogger(__name__)

RULES_REFRESH_S = 2.0  # rules changed by another instance are seen within this
OUTBOX_POLL_S = 1.0  # the outbox is looked at this often when nothing wakes it (retries, other instances)
OUTBOX_BATCH = 32
FIRST_RETRY_S = 1.0


def retry_after(attempts: int, cap_s: float) -> float:
    """Capped exponential backoff, jittered so that receivers coming back are not hit all at once."""
    return min(cap_s, FIRST_RETRY_S * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)


def attributes_json(model: ModelSpec, probabilities) -> list[dict]:
    return [
        {
            "name": a.name,
            "group": a.group,
            "probability": float(p),
            "threshold": a.threshold,
            "positive": bool(p > a.threshold),
        }
        for a, p in zip(model.attributes, probabilities, strict=True)
    ]


def jpeg(picture: np.ndarray | None) -> bytes | None:
    if picture is None:
        return None
    out = io.BytesIO()
    Image.fromarray(picture).save(out, "JPEG", quality=85)
    return out.getvalue()


def message(alert: Alert, public_url: str | None) -> dict:
    """What every channel sends for an alert (the webhook's body, the MQTT payload, the SSE data)."""
    base = (public_url or "").rstrip("/")
    return {
        "id": alert.id,
        "rule": {"id": alert.rule_id, "name": alert.rule_name},
        "camera": alert.camera,
        "fired_at": alert.fired_at.isoformat(),
        "decided_at": alert.payload["decided_at"],
        "track": alert.payload["track"],
        "thumbnail": f"{base}/alerts/{alert.id}/thumbnail" if alert.has_thumbnail else None,
    }


class Alerts:
    def __init__(self, store: AlertStore, model: ModelSpec, settings: Settings, metrics: AlertMetrics) -> None:
        self.store, self.model, self.settings, self.metrics = store, model, settings, metrics
        self.publisher = MqttPublisher(settings.mqtt_url, settings.mqtt_topic_prefix) if settings.mqtt_url else None
        self._rules: list[tuple[Rule, Criteria]] = []
        self._fired: dict[str, set[int]] = {}  # live track key -> rules fired for it
        self._writes: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()  # the outbox has work, or must stop
        self._stopping = False
        self._delivering = False
        self._new_alert = asyncio.Event()  # replaced after each set: events readers wait on it

    # Life

    async def start(self, deliver: bool = True) -> None:
        """Matches from now on; with ``deliver=False`` it only fires (stores alerts and their deliveries in the
        outbox) and leaves the delivering to the instances that do: a camera actor on Ray, whose alerts the
        ingress replicas' outbox workers send."""
        await self.reload_rules()
        self._tasks = [asyncio.create_task(self._refresh_rules(), name="alert-rules")]
        if deliver:
            if self.publisher is not None:
                self.publisher.start()
            self._tasks.append(asyncio.create_task(self._drain_outbox(), name="alert-outbox"))
        self._delivering = deliver

    async def stop(self) -> None:
        """Stores the alerts being fired, lets the deliveries under way finish (none is cut between the receiver's
        answer and its record), then stops."""
        await asyncio.gather(*self._writes, return_exceptions=True)
        refresh, *drain = self._tasks
        refresh.cancel()
        self._stopping = True
        self._wake.set()
        await asyncio.gather(refresh, *drain, return_exceptions=True)
        if self.publisher is not None and self._delivering:
            await asyncio.to_thread(self.publisher.stop)

    async def reload_rules(self) -> None:
        rules = await asyncio.to_thread(self.store.rules)
        compiled = []
        for rule in rules:
            try:
                compiled.append((rule, criteria(rule.spec.search, self.model)))
            except Exception as exc:  # a rule written for another model's schema: kept, but it cannot fire
                log.warning("rule %s (%s) cannot match the served model: %s", rule.id, rule.name, exc)
        self._rules = compiled

    async def _refresh_rules(self) -> None:
        while True:
            await asyncio.sleep(RULES_REFRESH_S)
            try:
                await self.reload_rules()
            except Exception:
                log.exception("could not reload the alert rules")

    # Matching

    def stream_event(self, event, thumbnail=None) -> None:
        """A stream manager's event listener: a live track's update or end (``app.streams.Event``), and how to get
        its best picture so far (called only when a rule fires)."""
        track = event.track
        key = f"stream:{track.stream_id}:{track.track_id}"
        ending = event.kind == "track_end"
        if track.windows and (track.windows >= self.settings.alert_min_windows or ending):
            body = {
                "source": "stream",
                "stream": track.stream_id,
                "track_id": track.track_id,
                "first_seen": track.first_seen.at.isoformat(),
                "last_seen": track.last_seen.at.isoformat(),
                "windows": track.windows,
                "attributes": attributes_json(self.model, track.probabilities),
            }
            self._match(track.stream_name, key, list(track.probabilities), body, thumbnail, "stream")
        if ending:
            self._fired.pop(key, None)

    def tracks_stored(self, tracks: list[NewTrack], ids: list[int]) -> None:
        """Uploads stored with ``store=true``: each track is settled (its whole footage was seen)."""
        for track, stored in zip(tracks, ids, strict=True):
            body = {
                "source": track.source,
                "id": stored,
                "track_id": track.track_id,
                "first_seen": track.first_seen.isoformat(),
                "last_seen": track.last_seen.isoformat(),
                "windows": track.windows,
                "attributes": attributes_json(self.model, track.probabilities),
            }
            key = f"track:{stored}"
            self._match(track.camera, key, list(track.probabilities), body, track.thumbnail, track.source)
            self._fired.pop(key, None)

    def _match(self, camera: str, key: str, probabilities, body: dict, thumbnail, source: str) -> None:
        now = datetime.now(UTC)
        fired = self._fired.setdefault(key, set())
        for rule, wanted in self._rules:
            if rule.id in fired or not active(rule.spec.schedule, now):
                continue
            if matches(wanted, self.model, camera, probabilities):
                fired.add(rule.id)
                if callable(thumbnail):  # a live track's picture, taken once, when a rule first fires
                    thumbnail = thumbnail()
                payload = {"track": body, "decided_at": now.isoformat()}
                task = asyncio.get_running_loop().create_task(self._fire(rule, camera, key, payload, thumbnail, source))
                self._writes.add(task)  # held until done: the loop keeps only weak references to tasks
                task.add_done_callback(self._writes.discard)

    async def _fire(self, rule: Rule, camera: str, key: str, payload: dict, thumbnail, source: str) -> None:
        deliveries = []
        if rule.spec.webhook:
            deliveries.append(("webhook", rule.spec.webhook))
        if rule.spec.mqtt and self.publisher is not None:
            deliveries.append(("mqtt", self.publisher.alert_topic(camera, rule.id)))
        try:
            picture = await asyncio.to_thread(jpeg, thumbnail)
            alert_id = await asyncio.to_thread(self.store.fire, rule, camera, key, payload, picture, deliveries)
        except Exception:
            log.exception("could not store an alert of rule %s for %s", rule.id, key)
            return
        if alert_id is None:
            return
        log.info("rule %s (%s) fired for %s on camera %r: alert %s", rule.id, rule.name, key, camera, alert_id)
        self.metrics.fired.labels(source).inc()
        self._wake.set()
        self._new_alert.set()
        self._new_alert = asyncio.Event()

    async def next_alert(self, timeout_s: float) -> None:
        """Returns when an alert fires here, or after ``timeout_s`` (alerts of other instances are polled)."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that meets the event.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._new_alert.wait()

    # Delivering

    async def _drain_outbox(self) -> None:
        channels = ("webhook", "mqtt") if self.publisher is not None else ("webhook",)
        timeout = httpx.Timeout(self.settings.webhook_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            while not self._stopping:
                try:
                    due = await asyncio.to_thread(self.store.claim_due, OUTBOX_BATCH, channels)
                    if due:
                        await asyncio.gather(*(self._send(client, d) for d in due))
                        continue
                    self.metrics.outbox.set(await asyncio.to_thread(self.store.pending))
                except Exception:
                    log.exception("the alert outbox failed a round; trying again")
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(OUTBOX_POLL_S):
                        await self._wake.wait()

    async def _send(self, client: httpx.AsyncClient, due: Due) -> None:
        body = json.dumps(message(due.alert, self.settings.public_url)).encode()
        try:
            if due.channel == "webhook":
                if due.secret is None:
                    await asyncio.to_thread(self.store.failed, due.id, "the rule was deleted before delivery")
                    self.metrics.deliveries.labels(due.channel, "failed").inc()
                    return
                await post(client, due.target, due.secret, body, due.alert.id)
            else:
                assert self.publisher is not None
                await asyncio.to_thread(self.publisher.publish, due.target, body, due.alert.camera)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if due.attempts >= self.settings.webhook_max_attempts:
                log.warning(
                    "alert %s: %s delivery failed after %d attempts: %s", due.alert.id, due.channel, due.attempts, error
                )
                await asyncio.to_thread(self.store.failed, due.id, error)
                self.metrics.deliveries.labels(due.channel, "failed").inc()
            else:
                wait = retry_after(due.attempts, self.settings.webhook_retry_max_s)
                await asyncio.to_thread(self.store.retry, due.id, error, wait)
                self.metrics.deliveries.labels(due.channel, "retry").inc()
            return
        await asyncio.to_thread(self.store.delivered, due.id)
        self.metrics.deliveries.labels(due.channel, "delivered").inc()
        decided = datetime.fromisoformat(due.alert.payload["decided_at"])
        self.metrics.latency.labels(due.channel).observe((datetime.now(UTC) - decided).total_seconds())
