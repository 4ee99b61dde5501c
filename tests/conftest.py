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


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory):
    """A calibrated tiny checkpoint (temperatures, thresholds, provenance) and its ONNX export, made once with the
    command a user runs (exporting takes about 10 s)."""
    import torch

    from model import create_model, get_config, load_schema, save_checkpoint
    from model.export import main

    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model(get_config("tiny"), load_schema("mars"))
    model.temperatures = [0.5 + 0.03 * i for i in range(len(model.schema))]
    model.thresholds = [0.3 + 0.005 * i for i in range(len(model.schema))]
    checkpoint = folder / "tiny.safetensors"
    save_checkpoint(model, checkpoint, provenance={"model_card": "https://example.org/card", "run": "test"})
    out = folder / "tiny.onnx"
    assert main([str(checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return checkpoint, out
