"""The settings reference, written from ``app/settings.py``: each field's variable, default and description.

    vtfpar settings --out docs/settings.md      # or: python -m app.settings_doc --out docs/settings.md

``tests/app/test_settings_doc.py`` checks that docs/settings.md is what this writes, so the page never drifts from
the code; ``vtfpar serve``'s flags are built from the same fields.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from .settings import Settings, cuda_defaults, field_extra

HEADER = """\
# Settings

Every setting is an environment variable, read once at startup, or the `vtfpar serve` flag of the same name
(`VTFPAR_MAX_QUEUE=32` or `--max-queue 32`; a flag wins over the variable). `/info` echoes the values in force,
but for paths, addresses and secrets. Invalid values stop the service at startup with a message naming the
variable.

This page is generated from `app/settings.py`: `vtfpar settings --out docs/settings.md` rewrites it.

| variable | default | meaning |
|---|---|---|
"""

FOOTER = """
`uvicorn --factory app.main:create_app` also works (it reads the same variables, logs the same lines, access lines
with their request ids included), but `vtfpar serve` adds the SIGTERM handling below.

**Shutdown.** On SIGTERM or SIGINT the service reports not ready at once (`/health/ready` 503, `vtfpar_ready` 0),
uvicorn stops accepting connections and waits up to `VTFPAR_DRAIN_TIMEOUT_S` for accepted requests, the batch
queue drains, and the process exits. A client that disconnects while its clip is queued takes the clip out of the
queue.
"""


def variable(name: str) -> str:
    return "VTFPAR_" + name.upper()


def default_text(name: str, field: FieldInfo) -> str:
    """The default as a reader would write it; computed defaults say how they are computed."""
    if (text := field_extra(field).get("default_text")) is not None:
        return str(text)
    value = field.default
    if value is None:
        text = "unset"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, tuple):
        text = ",".join(value)
    else:
        text = str(value)
    on_cuda = cuda_defaults().get(name)
    return text if on_cuda is None else f"{text}; {on_cuda} on CUDA"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    rows = [
        f"| `{variable(name)}` | `{default_text(name, field)}` | {cell(field.description or '')} |"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "\n".join(rows) + "\n" + FOOTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar settings", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the reference to this file (default: print it)")
    args = parser.parse_args(argv)
    if args.out is None:
        sys.stdout.write(markdown())
    else:
        args.out.write_text(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
