"""``python -m app`` (or ``vtfpar-serve``): serve with uvicorn, configured from ``VTFPAR_*`` variables.

On SIGTERM/SIGINT the service reports not ready at once; uvicorn stops accepting connections and waits up to
``VTFPAR_DRAIN_TIMEOUT_S`` for accepted requests, then the lifespan drains the batch queue and exits.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from .main import build_server, create_app
from .settings import Settings

STARTUP_FAILURE = 3  # uvicorn's own exit code when the lifespan startup fails; also when warm-up fails
BAD_SETTINGS = 2


def settings_or_exit() -> Settings:
    """The ``VTFPAR_*`` settings, or exit with status 2 and a line naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = "VTFPAR_" + "_".join(str(part) for part in error["loc"]).upper() if error["loc"] else "settings"
            print(f"error: {where}: {error['msg']}", file=sys.stderr)
        sys.exit(BAD_SETTINGS)


def main() -> None:
    settings = settings_or_exit()
    server = build_server(create_app(settings), settings)
    server.run()
    if not server.started or server.failed:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
