"""A rule on a live RTSP camera (GStreamer's RTSP server playing a synthetic scene into the real service): each
person followed fires once, when their attributes have settled, and the alert arrives both as a signed webhook
and on Mosquitto."""

from __future__ import annotations

import time

import httpx
import pytest

from benchmarks.alert_receivers import Mosquitto, Receiver, mosquitto_missing

from ..conftest import E2E_LIMITS
from ..harness import make_settings, serving
from ..streams import FPS, IndexedDetector, RtspCamera, make_camera

pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.rtsp]
MIN_WINDOWS = 2


def test_a_rule_fires_once_per_live_track_with_a_signed_webhook_and_an_mqtt_message(tiny_checkpoint, tmp_path):
    if reason := mosquitto_missing():
        pytest.skip(reason)
    camera = make_camera(tmp_path, seconds=8.0)
    rtsp = RtspCamera(camera.path, tmp_path / "rtsp.log")
    broker = Mosquitto(tmp_path)
    receiver = Receiver().start()
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        stream_update_s=0.5,
        stream_track_lost_s=0.5,
        stream_detection_interval=2,
        min_frames=1,
        stream_sources=(f"rtsp://127.0.0.1:{rtsp.port}/",),
        data_dir=tmp_path / "data",
        alert_min_windows=MIN_WINDOWS,
        webhook_targets=(f"http://127.0.0.1:{receiver.port}/hooks/",),
        mqtt_url=broker.url,
    )
    try:
        with serving(settings, detector=IndexedDetector(camera)) as running:
            rule = {"name": "anyone", "search": {"camera": "gate-3"}, "webhook": receiver.url, "mqtt": True}
            created = httpx.post(f"{running.url}/rules", json=rule).json()
            receiver.secret = created["secret"]
            stream = httpx.post(f"{running.url}/streams", json={"name": "gate-3", "url": rtsp.url}).json()["id"]
            # One play of the recording (the RTSP server starts it again for a reconnecting client), then the
            # stream is closed: the tracks still open end, and those not settled yet are matched as they end.
            time.sleep(camera.frames / FPS + 2)
            assert httpx.delete(f"{running.url}/streams/{stream}").status_code == 204
            deadline = time.monotonic() + 20
            while not (fired := httpx.get(f"{running.url}/alerts").json()["alerts"]) or any(
                d["state"] == "pending" for a in fired for d in a["deliveries"]
            ):
                assert time.monotonic() < deadline, f"alerts still pending: {fired}"
                time.sleep(0.5)
    finally:
        receiver.stop()
        broker.stop()
        rtsp.stop()
    assert fired, "no live track fired"
    hooked = [alert for _, alert, _ in receiver.received]
    assert all(valid for _, _, valid in receiver.received)
    tracks = [(a["track"]["stream"], a["track"]["track_id"]) for a in hooked]
    assert len(tracks) == len(set(tracks)) == len(fired)  # once per track
    assert all(a["track"]["source"] == "stream" and a["camera"] == "gate-3" for a in hooked)
    # Fired when settled: at MIN_WINDOWS windows, or at the track's end with fewer.
    assert all(a["track"]["windows"] >= 1 for a in hooked)
    published = broker.of(f"vtfpar/alerts/gate-3/{created['id']}")
    assert sorted(a["id"] for _, _, a in published) == sorted(a["id"] for a in hooked)
