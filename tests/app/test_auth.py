"""The API token guards the routes that depend on ``require_token``: open without a token, 401 without the
right bearer once one is set."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from app.api.auth import require_token
from app.api.errors import install_error_handlers
from app.metrics import Metrics
from app.settings import Settings


def _client(token: str | None) -> TestClient:
    app = FastAPI()
    app.state.settings = Settings(api_token=token)
    install_error_handlers(app, retry_after_s=1, metrics=Metrics())

    @app.get("/guarded", dependencies=[Depends(require_token)])
    async def guarded() -> dict:
        return {"ok": True}

    return TestClient(app)


def test_without_a_token_set_the_route_is_open():
    assert _client(None).get("/guarded").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer s3cre"}],
)
def test_a_missing_or_wrong_token_is_401_unauthorized(headers):
    response = _client("s3cret").get("/guarded", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_the_right_bearer_token_is_let_through_whatever_the_scheme_case():
    client = _client("s3cret")
    assert client.get("/guarded", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/guarded", headers={"Authorization": "bearer s3cret"}).status_code == 200
