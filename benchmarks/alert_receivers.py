"""Receivers of alerts for the alerts' tests and benchmark: a webhook receiver on loopback that checks each
signature, and Debian's Mosquitto started on a free loopback port with a subscriber to everything."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt

from .servers import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300) -> bool:
    """The receiver's check, as docs/alerts.md shows it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= tolerance_s


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``: records (arrival time, alert, signature valid) per 2xx answer.
    ``stop`` takes it away (connections refused) and ``start`` brings it back on the same port."""

    def __init__(self, secret: str = "", port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/alerts"
        self.received: list[tuple[float, dict, bool]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(receiver.secret, self.headers.get("X-Vtfpar-Signature", "t=0,v1="), body)
                receiver.received.append((time.time(), json.loads(body), valid))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[int]:
        return [alert["id"] for _, alert, _ in self.received]


def mosquitto_missing() -> str | None:
    """Why Mosquitto cannot run here, or None."""
    if not Path(MOSQUITTO).exists():
        return "mosquitto is not installed (.ci/install-deploy-tools.sh installs it)"
    return None


class Mosquitto:
    """Debian's Mosquitto on 127.0.0.1, a free port, no persistence (see :func:`mosquitto_missing`)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.messages: list[tuple[float, str, bytes, bool]] = []  # arrival, topic, payload, retained
        self.subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.subscriber.on_message = lambda _c, _u, m: self.messages.append((time.time(), m.topic, m.payload, m.retain))
        deadline = time.monotonic() + 10
        while True:
            try:
                self.subscriber.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)
        self.subscriber.subscribe("#", qos=1)
        self.subscriber.loop_start()

    def of(self, topic_prefix: str) -> list[tuple[float, str, dict]]:
        return [(t, topic, json.loads(p)) for t, topic, p, _ in list(self.messages) if topic.startswith(topic_prefix)]

    def stop(self) -> None:
        self.subscriber.loop_stop()
        self.subscriber.disconnect()
        self.process.terminate()
        self.process.wait(10)
