"""``vtfpar``: one command whose subcommands are the project's tools, each with a real ``--help``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.metadata import version

import pytest

from app.__main__ import settings_or_exit, settings_parser
from app.settings import Settings
from vtfpar.cli import COMMANDS, main


def vtfpar(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "vtfpar", *args], capture_output=True, text=True, timeout=120
    )


def imported_modules(importtime_log: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported (its stderr: one ``| module`` line each)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")}


def test_help_lists_every_command_without_loading_any():
    result = vtfpar("--help", python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    assert all(f"  {name} " in result.stdout for name in COMMANDS)
    loaded = imported_modules(result.stderr)
    assert not loaded & {"torch", "app.main", "training", "model"}, "vtfpar --help should import no command"


def test_version_is_the_installed_package_version():
    result = vtfpar("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vtfpar {version('vtfpar-serve')}"


def test_an_unknown_command_fails_naming_the_commands():
    result = vtfpar("serv")
    assert result.returncode == 2 and "invalid choice: 'serv'" in result.stderr and "serve" in result.stderr


def test_serve_help_lists_a_flag_for_every_setting_and_starts_nothing():
    result = vtfpar("serve", "--help", python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    for name, field in Settings.model_fields.items():
        if name != "api_token":  # a secret: the environment only
            assert f"--{name.replace('_', '-')}" in result.stdout and f"VTFPAR_{name.upper()}" in result.stdout
            assert (field.description or "").split()[0] in result.stdout
    assert "--api-token" not in result.stdout
    loaded = imported_modules(result.stderr)
    assert not loaded & {"torch", "uvicorn", "app.main", "training"}, "serve --help should load nothing to serve"


def test_serve_flags_win_over_the_variables(monkeypatch):
    monkeypatch.setenv("VTFPAR_MAX_QUEUE", "16")
    monkeypatch.setenv("VTFPAR_MAX_BATCH_CLIPS", "4")
    flags = vars(
        settings_parser().parse_args(["--max-queue", "32", "--allowed-codecs", "h264,vp9", "--warmup", "false"])
    )
    settings = settings_or_exit(flags)
    assert (settings.max_queue, settings.max_batch_clips) == (32, 4)
    assert settings.allowed_codecs == ("h264", "vp9") and settings.warmup is False


def test_a_bad_serve_flag_exits_2_naming_the_flag_and_its_variable(capsys):
    flags = vars(settings_parser().parse_args(["--max-queue", "0"]))
    with pytest.raises(SystemExit) as stop:
        settings_or_exit(flags)
    assert stop.value.code == 2
    assert "--max-queue / VTFPAR_MAX_QUEUE" in capsys.readouterr().err


def present(name: str) -> bool:
    """Whether the command's module is in this tree (``export``'s module may arrive later than the table's row)."""
    return importlib.util.find_spec(COMMANDS[name].target.split(":")[0]) is not None


@pytest.mark.parametrize("name", [name for name in COMMANDS if name != "export" or present(name)])
def test_every_command_has_its_own_help(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["vtfpar", name, "--help"])
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: vtfpar {name} ")
