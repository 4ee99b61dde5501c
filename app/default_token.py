"""The token a service makes for itself, as Jupyter does: a service that listens beyond loopback with no
``VTFPAR_API_TOKEN`` would show everyone on the network the stored people, so at its first start it makes a token,
keeps it in ``<data_dir>/api-token`` (owner-only), and logs it with the console's address. Loopback-only services,
and operators who set ``VTFPAR_INSECURE_NO_TOKEN=true``, stay open."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from .settings import Settings

log = logging.getLogger(__name__)
TOKEN_FILE = "api-token"


def listens_beyond_loopback(host: str) -> bool:
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return True


def needs_default_token(settings: Settings) -> bool:
    return settings.api_token is None and not settings.insecure_no_token and listens_beyond_loopback(settings.host)


def stored_token(data_dir: Path) -> str:
    """The token kept in ``data_dir`` (made, owner-only, when there is none)."""
    path = data_dir / TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two instances starting on one data dir cannot both write a token.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # a copied or restored file may have come back readable by others
        token = path.read_text().strip()
        if token:
            return token
        raise ValueError(f"{path} is empty: delete it to get a new token, or put one in it") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def with_default_token(settings: Settings) -> Settings:
    """``settings`` with the stored token in force where the service needs one (unchanged otherwise)."""
    if not needs_default_token(settings):
        return settings
    return settings.model_copy(update={"api_token": SecretStr(stored_token(settings.data_dir))})


def announce(settings: Settings) -> None:
    """Logs the token made for ``settings`` and the console's address (once logging is configured)."""
    assert settings.api_token is not None
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    log.warning(
        "no VTFPAR_API_TOKEN and listening on %s: stored tracks, streams and store=true need the token kept in %s. "
        "The console: http://%s:%d/ui/ (token: %s)",
        settings.host,
        settings.data_dir.resolve() / TOKEN_FILE,
        host,
        settings.port,
        settings.api_token.get_secret_value(),
    )


def with_announced_default_token(settings: Settings) -> Settings:
    """:func:`with_default_token`, and the token logged when one is made or read for the service (logging set up)."""
    in_force = with_default_token(settings)
    if in_force is not settings:
        announce(in_force)
    return in_force
