"""``vtfpar serve`` (or ``python -m app``): serve with uvicorn, configured by flags or ``VTFPAR_*`` variables.

Every setting is a flag named after its variable (``--max-queue`` for ``VTFPAR_MAX_QUEUE``); a flag given wins over
the variable. On SIGTERM/SIGINT the service reports not ready at once; uvicorn stops accepting connections and
waits up to ``VTFPAR_DRAIN_TIMEOUT_S`` for accepted requests, then the lifespan drains the batch queue and exits.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr, ValidationError

from .settings import Settings
from .settings_doc import default_text, variable

STARTUP_FAILURE = 3  # uvicorn's own exit code when the lifespan startup fails; also when warm-up fails
BAD_SETTINGS = 2
METAVARS = {int: "N", float: "NUMBER", Path: "PATH", str: "TEXT", tuple: "A,B,..."}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def choices(annotation: object) -> tuple | None:
    if annotation is bool:
        return ("true", "false")
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


def metavar(annotation: object) -> str | None:
    """N, PATH, ... for a field's type (``int | None`` is N); None where argparse lists the choices."""
    if choices(annotation):
        return None
    for kind in (annotation, *typing.get_args(annotation)):
        if (plain := typing.get_origin(kind) or kind) in METAVARS:
            return METAVARS[plain]
    return "TEXT"


def settings_parser() -> argparse.ArgumentParser:
    """One flag per setting, described by the field; secrets stay variables only (a flag would show in ``ps``)."""
    parser = argparse.ArgumentParser(
        prog="vtfpar serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, field in Settings.model_fields.items():
        if SecretStr in typing.get_args(field.annotation):
            continue
        parser.add_argument(
            flag(name),
            dest=name,
            metavar=metavar(field.annotation),
            choices=choices(field.annotation),
            default=argparse.SUPPRESS,
            help=f"{field.description or ''} [{variable(name)}; default: {default_text(name, field)}]".replace(
                "%", "%%"
            ),
        )
    return parser


def settings_or_exit(given: dict[str, str] | None = None) -> Settings:
    """The ``VTFPAR_*`` settings with the flags ``given`` on top, or exit with status 2 naming each bad one."""
    try:
        return Settings(**(given or {}))  # type: ignore[arg-type]  # strings, validated as the variables are
    except ValidationError as exc:
        for error in exc.errors():
            names = [str(part) for part in error["loc"]]
            where = " / ".join([flag(names[0]), variable("_".join(names))]) if names else "settings"
            print(f"error: {where}: {error['msg']}", file=sys.stderr)
        sys.exit(BAD_SETTINGS)


def default_token_or_exit(settings: Settings, make: Callable[[Settings], Settings]) -> Settings:
    """``make(settings)`` (the settings with the default API token in force), or one line and exit 2."""
    try:
        return make(settings)
    except (OSError, ValueError) as exc:
        print(f"error: the API token in {settings.data_dir}: {exc}", file=sys.stderr)
        sys.exit(BAD_SETTINGS)


def main(argv: list[str] | None = None) -> None:
    given = vars(settings_parser().parse_args(argv))  # --help exits here, before anything loads
    settings = settings_or_exit(given)
    from .default_token import announce, with_default_token
    from .main import build_server, create_app  # after the flags: `--help` needs neither torch nor the model

    in_force = default_token_or_exit(settings, with_default_token)
    server = build_server(create_app(in_force), in_force)  # configures logging
    if in_force is not settings:
        announce(in_force)
    server.run()
    if not server.started or server.failed:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
