"""One table, ``app.api.errors.ERRORS``, gives each error code its status and its description: the error bodies and
the OpenAPI document both read it."""

from __future__ import annotations

import json

import pytest

from app.api.errors import ERRORS, error_response
from app.errors import ErrorCode, ServiceError
from app.main import create_app
from app.settings import Settings


def test_every_code_has_a_status_and_a_description():
    assert set(ERRORS) == set(ErrorCode)
    for code, (status, description) in ERRORS.items():
        assert 400 <= status < 600 and description.endswith("."), code


@pytest.mark.parametrize("code", list(ErrorCode))
def test_the_error_body_carries_the_table_status(code):
    response = error_response(ServiceError(code, "why"), retry_after_s=2)
    assert response.status_code == ERRORS[code][0]
    assert json.loads(response.body) == {"error": {"code": code.value, "message": "why"}}
    assert ("Retry-After" in response.headers) == (response.status_code in {429, 503})


def test_the_openapi_document_lists_each_code_under_its_status():
    spec = create_app(Settings(device="cpu")).openapi()  # no lifespan: nothing is loaded
    responses = spec["paths"]["/predict"]["post"]["responses"]
    for code, (status, description) in ERRORS.items():
        if str(status) in responses:
            assert f"`{code.value}`: {description}" in responses[str(status)]["description"]
    assert "`queue_full`" in responses["429"]["description"] and "`not_ready`" in responses["503"]["description"]


def test_create_app_refuses_both_a_runner_and_a_backend():
    with pytest.raises(TypeError, match="a runner or a backend, not both"):
        create_app(Settings(device="cpu"), runner=object(), backend=object())  # type: ignore[arg-type]


def test_info_sections_hold_the_fields_marked_for_them():
    assert "max_upload_bytes" in Settings.in_info_section("limits")
    assert "max_track_boxes" in Settings.in_info_section("limits")
    assert "max_queue" in Settings.in_info_section("batching")
    assert Settings.in_info_section("decoding") == ["decode_workers", "decode_threads"]
