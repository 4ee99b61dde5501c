"""Errors nothing anticipated: a 500 with the error body, X-Request-Id, and one log line with the request id."""

from __future__ import annotations

import io
import json
import logging

import httpx

from app.api import deps
from app.log import JsonFormatter
from benchmarks.media import encode, frames

from .harness import metric

CLIP = encode("avi", frames(5, width=32, height=32))


def test_an_unexpected_error_is_a_500_with_the_request_id_in_header_body_and_log(server, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(deps, "read_upload", broken)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    before = metric(server.url, "vtfpar_requests_total", endpoint="/predict", status="500")
    try:
        response = httpx.post(
            f"{server.url}/predict", files={"video": ("c.avi", CLIP)}, headers={"X-Request-Id": "bug-42"}, timeout=30
        )
        anonymous = httpx.post(f"{server.url}/predict", files={"video": ("c.avi", CLIP)}, timeout=30)
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 500 and response.json() == {
        "error": {"code": "internal_error", "message": "internal error"}
    }
    assert response.headers["x-request-id"] == "bug-42"
    assert anonymous.status_code == 500 and len(anonymous.headers["x-request-id"]) == 32
    errors = [entry for entry in map(json.loads, lines.getvalue().splitlines()) if entry["level"] == "error"]
    # One line per failure (the server does not log it a second time), each with its request id and traceback.
    assert [entry["request_id"] for entry in errors] == ["bug-42", anonymous.headers["x-request-id"]]
    assert all("RuntimeError: a bug" in entry["exc"] for entry in errors)
    assert metric(server.url, "vtfpar_requests_total", endpoint="/predict", status="500") == before + 2
