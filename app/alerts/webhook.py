"""Webhooks: which URLs a rule may post to, the Stripe-style signature, and one POST.

A webhook makes the server open a connection, so its URL must lie under one of ``VTFPAR_WEBHOOK_TARGETS``'
prefixes, compared as the stream sources' are (scheme and host exactly, the path segment by segment, no dot
segments); a URL with whitespace or control characters is refused before it could split a request line or header.
Redirects are not followed: a 3xx is a failed attempt, so no answer can send the POST outside the prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import unquote, urlsplit

import httpx

from ..errors import ErrorCode, ServiceError

SIGNATURE_HEADER = "X-Vtfpar-Signature"


def check_webhook(url: str, allowed: tuple[str, ...]) -> str:
    """``url`` if a rule may post to it, else 403 ``webhook_not_allowed`` saying why."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ServiceError(ErrorCode.WEBHOOK_NOT_ALLOWED, "webhook: the URL has whitespace or control characters")
    split = urlsplit(url)
    if split.scheme.lower() not in ("http", "https") or not split.hostname:
        raise ServiceError(ErrorCode.WEBHOOK_NOT_ALLOWED, f"webhook: {url} is not an http(s) URL with a host")
    if split.username is not None or split.password is not None:
        raise ServiceError(ErrorCode.WEBHOOK_NOT_ALLOWED, "webhook: credentials in the URL are not accepted")
    if not allowed:
        raise ServiceError(ErrorCode.WEBHOOK_NOT_ALLOWED, "webhooks are off on this server (VTFPAR_WEBHOOK_TARGETS)")
    if not any(_under(url, prefix) for prefix in allowed):
        raise ServiceError(ErrorCode.WEBHOOK_NOT_ALLOWED, f"webhook: {url} is not under any of VTFPAR_WEBHOOK_TARGETS")
    return url


def _under(url: str, prefix: str) -> bool:
    # The stream sources' rule (app/streams/sources.py), kept here so that the two allow-lists can change apart.
    split, allowed = urlsplit(url), urlsplit(prefix)
    if (split.scheme.lower(), split.netloc.lower()) != (allowed.scheme.lower(), allowed.netloc.lower()):
        return False
    if any(segment in (".", "..") for segment in unquote(split.path).split("/")):
        return False
    return split.path.startswith(allowed.path) and (
        allowed.path.endswith("/") or split.path == allowed.path or split.path[len(allowed.path) :].startswith("/")
    )


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def post(client: httpx.AsyncClient, url: str, secret: str, body: bytes, alert_id: int) -> None:
    """One signed POST; raises with the reason unless the receiver answers 2xx."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body, int(time.time())),
        "X-Vtfpar-Alert": str(alert_id),  # the same on every retry: a receiver can drop repeats by it
    }
    response = await client.post(url, content=body, headers=headers)
    if not response.is_success:
        raise RuntimeError(f"HTTP {response.status_code} from the webhook")
