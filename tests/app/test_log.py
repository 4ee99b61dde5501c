"""Structured logs: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging

from app.log import JsonFormatter, request_id_var


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
