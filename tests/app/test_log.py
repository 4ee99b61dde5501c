"""Structured logs: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import logging.config
import time

import httpx

from app.log import JsonFormatter, log_config, request_id_var


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
