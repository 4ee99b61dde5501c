"""A throwaway PostgreSQL server (Debian's ``postgresql`` binaries) in a temporary folder on a loopback port, for
the store's tests and ``benchmarks/store.py``. PostgreSQL refuses to run as root: as root, the server runs as the
``postgres`` user (``runuser``) in a folder handed to it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .servers import LOOPBACK, free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({BIN}/initdb missing; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start the server as 'postgres'"
    return None


class PostgresServer:
    """``with PostgresServer() as server: server.url`` -> ``postgresql://postgres@127.0.0.1:PORT/postgres``."""

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="vtfpar-pg-"))
        self.port = free_port()
        # Durability is not under test: fsync off makes the throwaway server fast on a shared disk.
        self.options = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(options or {})}
        self.url = f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
        data = self.folder / "data"
        self._run(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        settings = [f"-c {k}={v}" for k, v in self.options.items()]
        flags = " ".join([f"-p {self.port}", f"-k {self.folder}", f"-c listen_addresses={LOOPBACK}", *settings])
        log = self.folder / "server.log"
        self._run(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", flags, "-w", "start")
        return self

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self._run(str(BIN / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", name)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        try:
            self._run(str(BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
