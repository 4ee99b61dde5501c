"""Structured logs: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import logging.config
import time

import httpx
import pytest

from app.log import JsonFormatter, log_config, request_id_var
from benchmarks.servers import LOOPBACK, AppProcess, free_port


def test_log_lines_are_json_with_the_request_id_and_extra_fields():
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST %s %d", ("/predict", 200), None)
    record.status = 200
    token = request_id_var.set("cam7-track42")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["msg"] == "POST /predict 200" and entry["level"] == "info" and entry["logger"] == "app.access"
    assert entry["request_id"] == "cam7-track42" and entry["status"] == 200
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # outside a request


def _text_formatter() -> logging.Formatter:
    """The formatter the service logs plain text with (VTFPAR_LOG_JSON=false)."""
    spec = log_config("info", json_logs=False)["formatters"]["default"]
    return logging.config.DictConfigurator({}).configure_formatter(spec)


def test_plain_text_lines_escape_what_clients_send_and_carry_the_request_id():
    path = "/x\n2030-01-01 00:00:00,000 INFO app.access: GET /admin 200\r\x1b[31m\u2028"
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "%s %s %d", ("GET", path, 404), None)
    token = request_id_var.set("cam7-track42")
    try:
        line = _text_formatter().format(record)
    finally:
        request_id_var.reset(token)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    escaped = r"GET /x\n2030-01-01 00:00:00,000 INFO app.access: GET /admin 200\r\x1b[31m\u2028 404"
    assert line.endswith(f"app.access [cam7-track42]: {escaped}")


def test_a_newline_sent_as_percent_0a_cannot_forge_an_access_log_line(server, caplog):
    def forged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "app.access" and "forged" in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="app.access"):
        response = httpx.get(f"{server.url}/x%0aforged%0d%0aline", headers={"X-Request-Id": "forger"})
        deadline = time.monotonic() + 10  # the server thread logs the line after the answer has gone out
        while not forged() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert response.status_code == 404
    records = forged()
    assert len(records) == 1 and "\n" in records[0].getMessage()  # the path arrives decoded
    assert _text_formatter().format(records[0]).count("\n") == 0
    assert JsonFormatter().format(records[0]).count("\n") == 0


@pytest.mark.slow
@pytest.mark.e2e
def test_uvicorn_factory_follows_the_log_settings_and_writes_access_lines_with_request_ids(tiny_checkpoint, tmp_path):
    """``uvicorn --factory app.main:create_app`` (docs/settings.md) logs as ``vtfpar serve`` does."""
    port = free_port()
    settings = {"VTFPAR_CHECKPOINT": str(tiny_checkpoint), "VTFPAR_LOG_JSON": "true", "VTFPAR_LOG_LEVEL": "info"}
    command = ["--factory", "app.main:create_app", "--host", LOOPBACK, "--port", str(port)]
    with AppProcess(settings, tmp_path / "app.log", module="uvicorn", args=command) as app:
        url = f"http://{LOOPBACK}:{port}"
        app.wait_until_ok(f"{url}/health/ready", timeout_s=120)
        assert httpx.get(f"{url}/info", headers={"X-Request-Id": "factory-1"}).status_code == 200
        deadline = time.monotonic() + 10
        while "factory-1" not in app.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = app.output().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry["logger"] == "app.main" for entry in entries), lines  # the app's own lines, as JSON
    access = [entry for entry in entries if entry["logger"] == "app.access"]
    assert [(entry["msg"], entry["request_id"]) for entry in access] == [("GET /info 200", "factory-1")], lines
    assert not [line for line in lines if "GET /info" in line and not line.startswith("{")], lines
