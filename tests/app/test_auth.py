"""The API token guards the routes that depend on ``require_token``: open without a token, 401 without the
right bearer once one is set, 429 with Retry-After for a client that keeps guessing; ``vtfpar serve`` makes a
token for a service that listens beyond loopback."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from app.api.auth import MAX_WRONG_TOKENS, WRONG_TOKEN_WINDOW_S, WrongTokenThrottle, require_token
from app.api.errors import install_error_handlers
from app.metrics import Metrics
from app.settings import Settings


def _client(token: str | None) -> TestClient:
    app = FastAPI()
    app.state.settings = Settings(api_token=token)
    app.state.metrics = Metrics()
    app.state.wrong_tokens = WrongTokenThrottle()
    install_error_handlers(app, retry_after_s=1, metrics=app.state.metrics)

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


def _wrong_tokens_counted(client: TestClient) -> float:
    return client.app.state.metrics.registry.get_sample_value("vtfpar_wrong_tokens_total")  # type: ignore[attr-defined]


def test_a_client_that_keeps_guessing_waits_and_is_counted():
    client = _client("s3cret")
    for guess in range(MAX_WRONG_TOKENS):
        assert client.get("/guarded", headers={"Authorization": f"Bearer guess-{guess}"}).status_code == 401
    throttled = client.get("/guarded", headers={"Authorization": "Bearer s3cret"})  # even the right one waits
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "too_many_wrong_tokens"
    assert 0 < int(throttled.headers["Retry-After"]) <= WRONG_TOKEN_WINDOW_S
    assert _wrong_tokens_counted(client) == MAX_WRONG_TOKENS
    # Requests without any token (a browser before its login) are not guesses.
    assert _client("s3cret").get("/guarded").status_code == 401
    fresh = _client("s3cret")
    for _ in range(MAX_WRONG_TOKENS + 3):
        assert fresh.get("/guarded").status_code == 401
    assert _wrong_tokens_counted(fresh) == 0


def test_the_wait_ends_when_the_oldest_guess_leaves_the_window():
    throttle = WrongTokenThrottle(limit=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert throttle.wait_s("10.0.0.9", t) == 0
        throttle.failed("10.0.0.9", t)
    assert throttle.wait_s("10.0.0.9", 30.0) == 30.0  # until the guess at t=0 is a minute old
    assert throttle.wait_s("10.0.0.8", 30.0) == 0  # another client is not slowed
    assert throttle.wait_s("10.0.0.9", 60.5) == 0
