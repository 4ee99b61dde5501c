"""Test-wide guards: nothing in the suite may reach a model hub or any non-local address."""

import ipaddress
import os
import socket
import tempfile

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Servers started by the tests keep their track store (SQLite, thumbnails) in a folder of their own.
os.environ.setdefault("VTFPAR_DATA_DIR", tempfile.mkdtemp(prefix="vtfpar-data-"))

_connect = socket.socket.connect


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # unix socket path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_only_connect(self, address):
    if not _is_local(address):
        raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _local_only_connect
    yield
    socket.socket.connect = _connect
