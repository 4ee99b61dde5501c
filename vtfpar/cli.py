"""``vtfpar COMMAND [ARGS]``: each command is the ``main(argv)`` of one module, imported only when it runs.

Importing only the chosen module keeps ``vtfpar --help`` fast and keeps the service's process free of the trainer
(and of Ray unless it serves on Ray).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version


@dataclass(frozen=True)
class Command:
    target: str  # "package.module:function", called with the command's arguments
    summary: str

    def load(self) -> Callable[[list[str]], int | None]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


COMMANDS = {
    "serve": Command("app.__main__:main", "serve the HTTP API (flags or VTFPAR_* variables)"),
    "serve-ray": Command("app.ray.__main__:main", "serve the same API on Ray Serve, decoding and model scaled apart"),
    "reembed": Command("app.reembed:main", "recompute stored tracks' appearance embeddings (from their thumbnails)"),
    "annotate": Command("app.annotate:main", "draw a service's predictions onto a video"),
    "train": Command("training.train:main", "train a model and write checkpoints"),
    "evaluate": Command("training.evaluate:main", "metrics of a checkpoint on a dataset split"),
    "calibrate": Command("training.calibrate:main", "fit a checkpoint's thresholds on its validation split"),
    "report": Command("training.card.report:main", "a model card with plots for a checkpoint"),
    "synthetic": Command("training.synthetic.tracklets:main", "write a synthetic labelled dataset"),
    "scenes": Command("training.synthetic.scenes:main", "write synthetic street scenes with ground-truth tracks"),
    "make-demo": Command("training.make_demo:main", "rebuild the built-in demo model"),
    "convert": Command("model.convert:main", "the authors' released checkpoint in this project's format"),
    "export": Command("model.export:main", "export a checkpoint to ONNX"),
    "summary": Command("model.summary:main", "a model preset's size and parameters"),
    "settings": Command("app.settings_doc:main", "the settings reference (docs/settings.md) from app/settings.py"),
    "bench": Command("benchmarks.suite:main", "measure throughput and latency (from a source checkout)"),
}


def parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())
    built = argparse.ArgumentParser(
        prog="vtfpar",
        description="VTFPAR++ pedestrian attributes from video: the service, the trainer and their tools.",
        epilog=f"commands:\n{listing}\n\n`vtfpar COMMAND --help` describes each.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    built.add_argument("--version", action="version", version=f"%(prog)s {version('vtfpar-serve')}")
    built.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands below")
    return built


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        parser().parse_args(args)  # --help, --version, or an error naming the commands; exits
    name, rest = args[0], args[1:]
    sys.argv[0] = f"vtfpar {name}"  # argparse's default prog, so each command's usage line reads as typed
    try:
        run = COMMANDS[name].load()
    except ModuleNotFoundError as exc:
        if exc.name is None or not COMMANDS[name].target.startswith(exc.name):
            raise
        print(
            f"vtfpar {name}: {exc.name} is not installed here (`pip install -e .` in a source checkout)",
            file=sys.stderr,
        )
        return 2
    return run(rest) or 0
