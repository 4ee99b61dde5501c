"""After SIGTERM, a request gets an answer (200, or 503 while the service drains) or a refused connection: never a
connection accepted by the kernel and then reset, as happens to connections still in the listen backlog when
the listening socket is closed."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import Counter

import pytest

from benchmarks.servers import LOOPBACK, AppProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 8
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def one_request(port: int) -> str:
    """What became of one request on a new connection: its status, "refused" or "reset"."""
    try:
        conn = socket.create_connection((LOOPBACK, port), timeout=10)
    except ConnectionRefusedError:
        return "refused"
    with conn:
        try:
            conn.sendall(REQUEST)
            head = conn.recv(12)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
    return head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "reset"  # closed without an answer


def test_requests_arriving_while_the_server_stops_are_answered_or_refused_never_reset(tiny_checkpoint, tmp_path):
    settings = {"VTFPAR_CHECKPOINT": str(tiny_checkpoint), "VTFPAR_DEVICE": "cpu", "VTFPAR_LOG_JSON": "false"}
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(port: int, until: float) -> None:
        # New connections back to back, from before SIGTERM until the server refuses them.
        while time.monotonic() < until:
            outcome = one_request(port)
            with lock:
                outcomes[outcome] += 1
            if outcome == "refused":
                return

    with AppProcess(settings, tmp_path / "app.log") as app:
        app.wait_ready(timeout_s=60)
        clients = [threading.Thread(target=hammer, args=(app.port, time.monotonic() + 30)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(0.5)
        app.process.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(60)
        app.process.wait(timeout=30)
    print(dict(outcomes))
    assert outcomes["refused"] == CLIENTS, "every client ends on a refused connection once the server is gone"
    assert set(outcomes) <= {"200", "503", "refused"}, dict(outcomes)
