"""Servers on loopback ports for end-to-end tests and benchmarks: a free port, a started process, a wait until
it answers.

Used by the in-process harness (``tests/app/harness.py``), the ``python -m app`` and ``python -m app.ray`` tests,
the Prometheus scrape test and ``benchmarks.suite``, so each of them says only what it starts and what it checks.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

LOOPBACK = "127.0.0.1"
POLL_S = 0.05


def loopback_socket() -> socket.socket:
    """A socket bound to a free loopback port, for a server that accepts a bound socket (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    return sock


def free_port() -> int:
    """A loopback port that is free now, for a subprocess to bind."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until_ok(
    url: str, *, alive: Callable[[], bool], timeout_s: float, describe: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``GET url`` until it answers 200 (connection errors mean "not yet").

    Raises RuntimeError, with ``describe()`` (the server's log, say) appended, once ``alive()`` is false or
    ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise RuntimeError(f"the server stopped before {url} answered 200\n{describe()}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f} s\n{describe()}")
        time.sleep(POLL_S)


class ServerProcess:
    """A server command in a subprocess with its output in a log file; leaving the ``with`` block stops it."""

    def __init__(
        self, command: list[str], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log = Path(log)
        with self.log.open("w") as output:
            self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait_until_ok(self, url: str, timeout_s: float) -> None:
        wait_until_ok(
            url,
            alive=lambda: self.process.poll() is None,
            timeout_s=timeout_s,
            describe=lambda: f"{self.process.args[0]} output:\n{self.output()[-3000:]}",
        )

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AppProcess(ServerProcess):
    """``python -m app`` (or another ``module`` serving the app the same way, with ``args``: ``vtfpar serve``) on a
    free loopback port, configured by ``VTFPAR_*`` variables on top of ``base_env`` (default: this process's
    environment)."""

    def __init__(
        self,
        settings: Mapping[str, str],
        log: Path,
        *,
        base_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        module: str = "app",
        args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        env = {
            **(os.environ if base_env is None else base_env),
            "VTFPAR_HOST": LOOPBACK,
            "VTFPAR_PORT": str(self.port),
            **settings,
        }
        super().__init__([sys.executable, "-m", module, *args], log, env=env, cwd=cwd)

    def wait_ready(self, timeout_s: float) -> None:
        self.wait_until_ok(f"{self.url}/health/ready", timeout_s)


def ray_environment(temp_dir: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``python -m app.ray`` commands sharing one local Ray instance: its temp dir (keep it short:
    Ray's unix sockets live there, and a socket path has at most 107 bytes) and an authentication token of its own,
    rather than ``~/.ray/auth_token``."""
    return {
        **(os.environ if base is None else base),
        "RAY_TMPDIR": temp_dir,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }


class RayServeProcess(ServerProcess):
    """``python -m app.ray`` with ``flags``, Serve's HTTP proxy on 127.0.0.1:``port``: a local Ray instance of its
    own, or, with ``RAY_ADDRESS`` in ``env``, the instance another such command started."""

    def __init__(self, flags: list[str], log: Path, env: Mapping[str, str], port: int) -> None:
        self.url = f"http://{LOOPBACK}:{port}"
        command = [sys.executable, "-m", "app.ray", "--host", LOOPBACK, "--port", str(port), *flags]
        super().__init__(command, log, env=env)

    def ray_address(self, timeout_s: float) -> str:
        """The address of the Ray instance this command started, once it has."""
        deadline = time.monotonic() + timeout_s
        while (found := re.search(r"RAY_ADDRESS=([^\s\"]+)", self.output())) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no Ray instance started\n{self.output()[-3000:]}")
            time.sleep(POLL_S)
        return found[1]
