"""Rules and alerts over HTTP against a real server: a rule created with the token fires on an upload stored with
store=true, and its alert arrives everywhere at once: the signed webhook on loopback, Mosquitto, the server-sent
events; GET /alerts lists it with its deliveries, an operator acknowledges it, its thumbnail is served. A webhook
outside the allow-list, an unknown attribute, MQTT without a broker and a bad time zone are refused precisely."""

from __future__ import annotations

import time

import httpx
import pytest

from benchmarks.alert_receivers import Mosquitto, Receiver, mosquitto_missing
from benchmarks.media import encode
from training.synthetic.scenes import make_scene, write_mot

from ..conftest import E2E_LIMITS
from ..harness import make_settings, serving
from ..streams import EventsReader

pytestmark = pytest.mark.e2e
TOKEN = "alert-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    made = make_scene(seed=5, walkers=3, num_frames=24, size=(96, 160))
    folder = tmp_path_factory.mktemp("scene")
    write_mot(made.boxes, folder / "gt.txt")
    return {"video": encode("mp4", made.frames), "mot": (folder / "gt.txt").read_bytes()}


def post(url: str, scene: dict, headers: dict | None = None, **params) -> httpx.Response:
    files = {"video": ("scene.mp4", scene["video"]), "tracks": ("gt.txt", scene["mot"])}
    return httpx.post(f"{url}/predict/tracks", files=files, params=params, headers=headers, timeout=60)


@pytest.fixture
def broker(tmp_path):
    if reason := mosquitto_missing():
        pytest.skip(reason)
    started = Mosquitto(tmp_path)
    yield started
    started.stop()


def test_a_rule_fires_on_a_stored_upload_and_every_channel_gets_the_alert(tiny_checkpoint, scene, broker, tmp_path):
    receiver = Receiver().start()
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        webhook_targets=(f"http://127.0.0.1:{receiver.port}/hooks/",),
        mqtt_url=broker.url,
    )
    try:
        with serving(settings) as running:
            url = running.url
            rule = {"name": "anyone at gate 3", "search": {"camera": ["gate-3"]}, "webhook": receiver.url, "mqtt": True}
            assert httpx.post(f"{url}/rules", json=rule).status_code == 401
            created = httpx.post(f"{url}/rules", json=rule, headers=AUTH)
            assert created.status_code == 201, created.text
            body = created.json()
            receiver.secret, rule_id = body["secret"], body["id"]
            assert (
                len(body["secret"]) == 64 and "secret" not in httpx.get(f"{url}/rules/{rule_id}", headers=AUTH).json()
            )
            events = EventsReader(f"{url}/alerts/events", headers=AUTH)
            _wait(lambda: events.status == 200, 10, "the events to open")
            # Another camera's upload matches nothing; gate-3's fires once per track.
            assert post(url, scene, AUTH, store="true", camera="hall").status_code == 200  # store=true needs the token
            answered = post(url, scene, AUTH, store="true", camera="gate-3")
            assert answered.status_code == 200, answered.text
            tracks = answered.json()["tracks"]
            _wait(lambda: len(receiver.received) >= len(tracks), 20, "the webhooks")
            _wait(lambda: len(broker.of(f"vtfpar/alerts/gate-3/{rule_id}")) >= len(tracks), 20, "the MQTT messages")
            _wait(lambda: len(events.of("alert")) >= len(tracks), 20, "the server-sent events")
            listed = _wait(
                lambda: [a for a in httpx.get(f"{url}/alerts", headers=AUTH).json()["alerts"]
                         if all(d["state"] == "delivered" for d in a["deliveries"])],
                20,
                "the deliveries recorded",
            )  # fmt: skip
            assert len(listed) == len(tracks)
            # A reader that reconnects with Last-Event-ID gets every alert after that one.
            replay = EventsReader(f"{url}/alerts/events", headers={**AUTH, "Last-Event-ID": str(listed[-1]["id"])})
            _wait(lambda: len(replay.of("alert")) == len(tracks) - 1, 20, "the replayed events")
            first = listed[-1]
            acknowledged = httpx.post(f"{url}/alerts/{first['id']}/ack", headers=AUTH).json()
            thumbnail = httpx.get(first["thumbnail"], headers=AUTH)
            assert httpx.get(f"{url}/alerts/999999/thumbnail", headers=AUTH).status_code == 404
            assert httpx.delete(f"{url}/rules/{rule_id}", headers=AUTH).status_code == 204
            assert httpx.get(f"{url}/rules/{rule_id}", headers=AUTH).status_code == 404
    finally:
        receiver.stop()
    assert all(valid for _, _, valid in receiver.received)
    hooks = sorted((a["camera"], a["track"]["track_id"], a["rule"]["id"]) for _, a, _ in receiver.received)
    assert hooks == sorted(("gate-3", t["track_id"], rule_id) for t in tracks)
    assert sorted(e["id"] for e in replay.of("alert")) == sorted(a["id"] for a in listed[:-1])
    mqtt_ids = sorted(a["id"] for _, _, a in broker.of(f"vtfpar/alerts/gate-3/{rule_id}"))
    assert mqtt_ids == sorted(receiver.ids()) == sorted(e["id"] for e in events.of("alert"))
    retained = [m for m in broker.messages if m[1] == "vtfpar/alerts/gate-3/last"]
    assert retained and any(m[1] == "vtfpar/alerts/status" and m[2] == b"online" for m in broker.messages)
    # The stored track, as GET /tracks/{id} has it, is named in the alert.
    stored_ids = {a["track"]["id"] for _, a, _ in receiver.received}
    assert len(stored_ids) == len(tracks)
    assert {d["channel"] for d in first["deliveries"]} == {"webhook", "mqtt"}
    assert first["rule"] == {"id": rule_id, "name": "anyone at gate 3"}
    assert acknowledged["acknowledged_at"] is not None
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"


def test_bad_rules_are_refused_with_a_precise_error(tiny_checkpoint, tmp_path):
    settings = make_settings(
        tiny_checkpoint, **E2E_LIMITS, data_dir=tmp_path / "data", webhook_targets=("http://127.0.0.1:9/hooks/",)
    )
    with serving(settings) as running:
        url = running.url

        def refused(rule: dict) -> tuple[int, str]:
            answer = httpx.post(f"{url}/rules", json={"name": "r", "search": {}, **rule})
            return answer.status_code, answer.json()["error"]["code"]

        assert refused({"webhook": "http://169.254.169.254/latest/"}) == (403, "webhook_not_allowed")
        assert refused({"webhook": "http://127.0.0.1:9/hooks/x\r\nHost: evil"}) == (403, "webhook_not_allowed")
        assert refused({"search": {"attributes": "backpak"}}) == (422, "unknown_attribute")
        assert refused({"mqtt": True}) == (422, "mqtt_off")
        assert refused({"schedule": {"timezone": "Mars/Olympus"}}) == (422, "bad_rule")
        assert refused({"search": {"colour": "red"}})[0] == 400
        assert refused({"schedule": {"start": "25:00"}})[0] == 400
        assert httpx.put(f"{url}/rules/5", json={"name": "r", "search": {}}).status_code == 404
        assert httpx.get(f"{url}/rules").json() == {"rules": []}


@pytest.mark.slow
def test_a_service_restarted_between_firing_and_delivery_delivers_every_alert_once(tiny_checkpoint, scene, tmp_path):
    receiver = Receiver()  # down while the first service runs
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        data_dir=tmp_path / "data",
        webhook_targets=(f"http://127.0.0.1:{receiver.port}/hooks/",),
        webhook_retry_max_s=1,
    )
    with serving(settings) as running:
        created = httpx.post(f"{running.url}/rules", json={"name": "all", "search": {}, "webhook": receiver.url})
        receiver.secret = created.json()["secret"]
        tracks = post(running.url, scene, store="true", camera="gate-3").json()["tracks"]

        def attempted() -> bool:
            fired = httpx.get(f"{running.url}/alerts").json()["alerts"]
            return len(fired) == len(tracks) and all(d["attempts"] for a in fired for d in a["deliveries"])

        _wait(attempted, 20, "a failed attempt each")
    receiver.start()
    try:
        with serving(settings) as running:
            _wait(lambda: len(receiver.received) >= len(tracks), 30, "the deliveries after the restart")
            time.sleep(2)  # a second delivery of any would arrive by now
            listed = httpx.get(f"{running.url}/alerts").json()["alerts"]
    finally:
        receiver.stop()
    assert len(listed) == len(tracks) and sorted(receiver.ids()) == sorted(a["id"] for a in listed)
    assert all(valid for _, _, valid in receiver.received)
    assert all(d["state"] == "delivered" and d["attempts"] >= 2 for a in listed for d in a["deliveries"])
