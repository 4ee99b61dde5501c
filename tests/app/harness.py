"""Starting the real service (uvicorn on 127.0.0.1, a free port, in a thread) for end-to-end tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.main import build_server, create_app
from app.settings import Settings


def make_settings(checkpoint: Path, **overrides) -> Settings:
    values = dict(
        checkpoint=checkpoint, device="cpu", decode_workers=2, decode_threads=1, drain_timeout_s=5, log_json=False
    )
    return Settings(**{**values, **overrides})


class RunningServer:
    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # log_config=None leaves pytest's logging alone.
        self.server = build_server(app, settings, host="127.0.0.1", port=0, log_config=None)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    @property
    def service(self):
        return self.app.state.service

    def start(self, wait_ready: bool = True) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        if wait_ready:
            while httpx.get(f"{self.url}/health/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not become ready")
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not stop"


@contextlib.contextmanager
def serving(settings: Settings, runner=None, wait_ready: bool = True):
    running = RunningServer(create_app(settings, runner=runner), settings).start(wait_ready)
    try:
        yield running
    finally:
        running.stop()


def metric(url: str, name: str, **labels) -> float:
    """The value of one sample in a live server's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
