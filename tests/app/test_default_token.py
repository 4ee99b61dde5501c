"""A service that listens beyond loopback without VTFPAR_API_TOKEN makes one at its first start, keeps it
owner-only in its data directory, logs it with the console's address, and uses the same one at the next start;
loopback-only services and an explicit opt-out stay open."""

from __future__ import annotations

import argparse
import logging
import logging.config
import stat

import pytest

import app.main
from app.__main__ import BAD_SETTINGS, main
from app.default_token import TOKEN_FILE, listens_beyond_loopback, with_default_token
from app.settings import Settings


class _NoServer:
    started, failed = True, False

    def run(self) -> None:
        pass


@pytest.fixture
def served(monkeypatch) -> list[Settings]:
    """``vtfpar serve`` up to the point where it would listen: the settings its app was made with."""
    made: list[Settings] = []
    monkeypatch.setattr(app.main, "create_app", lambda settings: made.append(settings))
    monkeypatch.setattr(app.main, "build_server", lambda application, settings: _NoServer())
    return made


def test_a_service_on_every_interface_makes_a_token_keeps_it_and_says_where_the_console_is(served, tmp_path, caplog):
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="app"):
        main(["--host", "0.0.0.0", "--port", "8123", "--data-dir", str(data)])
    token = served[0].api_token
    assert token is not None and len(token.get_secret_value()) >= 32
    path = data / TOKEN_FILE
    assert path.read_text().strip() == token.get_secret_value()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "http://localhost:8123/ui/" in caplog.text and token.get_secret_value() in caplog.text

    main(["--host", "0.0.0.0", "--data-dir", str(data)])  # the next start: the same token
    assert served[1].api_token == token


def test_loopback_an_explicit_token_and_the_opt_out_make_none(served, tmp_path, monkeypatch):
    data = tmp_path / "data"
    main(["--host", "127.0.0.1", "--data-dir", str(data)])
    main(["--host", "0.0.0.0", "--insecure-no-token", "true", "--data-dir", str(data)])
    monkeypatch.setenv("VTFPAR_API_TOKEN", "chosen")
    main(["--host", "0.0.0.0", "--data-dir", str(data)])
    assert [s.api_token.get_secret_value() if s.api_token else None for s in served] == [None, None, "chosen"]
    assert not (data / TOKEN_FILE).exists()


def test_an_empty_token_file_stops_the_start_with_one_line(served, tmp_path, capsys):
    (tmp_path / TOKEN_FILE).write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert exited.value.code == BAD_SETTINGS
    assert capsys.readouterr().err.count("\n") == 1 and served == []


def test_a_token_file_readable_by_others_is_made_owner_only(tmp_path):
    (tmp_path / TOKEN_FILE).write_text("kept\n")
    (tmp_path / TOKEN_FILE).chmod(0o644)
    settings = with_default_token(Settings(host="0.0.0.0", data_dir=tmp_path))
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "kept"
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("host", "beyond"),
    [
        ("0.0.0.0", True),
        ("::", True),
        ("10.0.0.7", True),
        ("cams.example.com", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("127.0.0.2", False),
    ],
)
def test_which_addresses_are_beyond_loopback(host, beyond):
    assert listens_beyond_loopback(host) is beyond


def test_uvicorn_factory_makes_the_token_by_vtfpar_host(tmp_path, monkeypatch):
    monkeypatch.delenv("VTFPAR_API_TOKEN", raising=False)
    monkeypatch.setenv("VTFPAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VTFPAR_HOST", "127.0.0.1")
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)  # the tests' logging stays as it is
    assert app.main.create_app().state.settings.api_token is None
    monkeypatch.delenv("VTFPAR_HOST")  # the default, 0.0.0.0: uvicorn's own --host is not known to the app
    token = app.main.create_app().state.settings.api_token
    assert token is not None and (tmp_path / TOKEN_FILE).read_text().strip() == token.get_secret_value()


def test_serve_ray_makes_the_token_for_its_proxys_address_and_the_replicas_get_it(tmp_path):
    cli = pytest.importorskip("app.ray.cli", reason="the [ray] extra is not installed")
    settings = Settings(data_dir=tmp_path, host="127.0.0.1")
    beyond = cli.served_settings(settings, argparse.Namespace(host="0.0.0.0", port=8123))
    assert beyond.api_token is not None and (beyond.host, beyond.port) == ("0.0.0.0", 8123)
    assert (tmp_path / TOKEN_FILE).read_text().strip() == beyond.api_token.get_secret_value()
    loopback = cli.served_settings(Settings(data_dir=tmp_path / "other"), argparse.Namespace(host="::1", port=8000))
    assert loopback.api_token is None
