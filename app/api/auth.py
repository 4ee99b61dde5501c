"""The API token: when one is in force (``VTFPAR_API_TOKEN``, or the one ``vtfpar serve`` makes for a service that
listens beyond loopback), routes that manage streams, store tracks or read and delete stored people's data depend
on :func:`require_token`; everything else stays open. Repeated wrong tokens from one client are slowed down."""

from __future__ import annotations

import hmac
import math
import time
from collections import deque

from fastapi import Request

from ..errors import ErrorCode, ServiceError

BEARER = "bearer "
MAX_WRONG_TOKENS = 10  # wrong tokens one client may send per window before it is made to wait
WRONG_TOKEN_WINDOW_S = 60.0
MAX_CLIENTS_REMEMBERED = 10_000  # a flood from many addresses cannot grow the table without bound


class WrongTokenThrottle:
    """Remembers each client's recent wrong tokens; a client with MAX_WRONG_TOKENS of them in the last window waits
    until the oldest leaves it. Written here rather than taken from a rate-limit library: it is one table, and
    it counts only failures (the libraries count every request)."""

    def __init__(self, limit: int = MAX_WRONG_TOKENS, window_s: float = WRONG_TOKEN_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}

    def wait_s(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before its token is checked again (0: check it now)."""
        failures = self._recent(client, now)
        return failures[0] + self.window_s - now if len(failures) >= self.limit else 0.0

    def failed(self, client: str, now: float) -> None:
        if client not in self._failures and len(self._failures) >= MAX_CLIENTS_REMEMBERED:
            self._forget_idle(now)
        self._failures.setdefault(client, deque(maxlen=self.limit)).append(now)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def _forget_idle(self, now: float) -> None:
        for client in [c for c, f in self._failures.items() if not f or f[-1] <= now - self.window_s]:
            del self._failures[client]
        if len(self._failures) >= MAX_CLIENTS_REMEMBERED:  # all of them active: forget the oldest client
            del self._failures[next(iter(self._failures))]


def require_token(request: Request) -> None:
    """Refuses (401 ``unauthorized``) a request without ``Authorization: Bearer <token>`` when a token is in force,
    and (429 ``too_many_wrong_tokens``, with Retry-After) a client that sent too many wrong ones lately."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    if not header:  # no guess: a browser's first call, before the console has asked for the token
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this route needs 'Authorization: Bearer <VTFPAR_API_TOKEN>'")
    throttle: WrongTokenThrottle = request.app.state.wrong_tokens
    client = request.client.host if request.client else ""
    now = time.monotonic()
    if (wait_s := throttle.wait_s(client, now)) > 0:
        raise ServiceError(
            ErrorCode.TOO_MANY_WRONG_TOKENS,
            f"too many wrong tokens from this client; retry in {math.ceil(wait_s)} s",
            retry_after_s=math.ceil(wait_s),
        )
    given = header[len(BEARER) :] if header[: len(BEARER)].lower() == BEARER else ""
    # Constant time, so that the answer's timing says nothing about how much of a guess was right.
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        throttle.failed(client, now)
        request.app.state.metrics.wrong_tokens.inc()
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this route needs 'Authorization: Bearer <VTFPAR_API_TOKEN>'")
