"""The store's HTTP tests' server: a real one whose stored tracks need a token, and the token sent with a call."""

from __future__ import annotations

from pathlib import Path

from ..conftest import E2E_LIMITS
from ..harness import make_settings, serving

TOKEN = "s3cret-token"


def tokened_server(checkpoint: Path, data_dir: Path):
    """``serving`` a server of ``checkpoint`` storing into ``data_dir``, behind ``TOKEN``, keeping tracks forever."""
    return serving(make_settings(checkpoint, **E2E_LIMITS, data_dir=data_dir, api_token=TOKEN, retention_days=0))


def auth(**params) -> dict:
    """httpx keyword arguments: the token, the query ``params``, a timeout for a loaded machine."""
    return {"headers": {"Authorization": f"Bearer {TOKEN}"}, "params": params, "timeout": 60}
