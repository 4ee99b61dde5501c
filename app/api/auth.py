"""The API token: when ``VTFPAR_API_TOKEN`` is set, routes that manage streams or read and delete stored people's
data depend on :func:`require_token`; everything else stays open (a local service needs no token)."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..errors import ErrorCode, ServiceError

BEARER = "bearer "


def require_token(request: Request) -> None:
    """Refuses (401 ``unauthorized``) a request without ``Authorization: Bearer <token>`` when a token is set."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    given = header[len(BEARER) :] if header[: len(BEARER)].lower() == BEARER else ""
    # Constant time, so that the answer's timing says nothing about how much of a guess was right.
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this route needs 'Authorization: Bearer <VTFPAR_API_TOKEN>'")
