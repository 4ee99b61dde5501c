"""docs/settings.md is generated from app/settings.py, so the reference never drifts from the code."""

from pathlib import Path

from app.settings import Settings
from app.settings_doc import markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_md_is_what_the_generator_writes():
    assert DOC.read_text() == markdown(), "regenerate it: vtfpar settings --out docs/settings.md"


def test_every_setting_has_a_description_and_a_row():
    text = markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description= (the docs and `vtfpar serve --help` need one)"
        assert f"| `VTFPAR_{name.upper()}` |" in text
