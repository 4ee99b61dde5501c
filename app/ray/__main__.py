"""``python -m app.ray`` or ``vtfpar serve-ray``: see ``app.ray.cli``.

A local Ray instance started here is this machine's alone: its services listen on 127.0.0.1 (by default Ray picks
the address other nodes would reach it at) and it sends no usage statistics. A command joining such an instance
(``RAY_ADDRESS=127.0.0.1:...``) must use 127.0.0.1 too, or Ray rewrites the address to the machine's. Ray reads
both variables when it is imported, so they are set before anything imports it; joining any other address
changes neither.
"""

import os


def main(argv: list[str] | None = None) -> None:
    if os.environ.get("RAY_ADDRESS", "127.0.0.1").startswith(("127.", "localhost")):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from .cli import main as serve  # after the variables: importing it imports Ray

    serve(argv)


if __name__ == "__main__":
    main()
