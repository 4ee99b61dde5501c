"""Every file the Dockerfile copies reaches the build: .dockerignore read with the docker package's matcher, which
implements Docker's rules (later lines win, `!` re-includes, `**`), rather than a look-alike of our own."""

from pathlib import Path

import pytest

from .test_dockerfile import REPO, instructions

build = pytest.importorskip("docker.utils.build", reason="the docker package comes with the dev extras")


def copy_sources() -> list[str]:
    sources = []
    for keyword, args in instructions():
        words = args.split()
        if keyword in ("COPY", "ADD") and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_every_copy_source_survives_the_dockerignore():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    sent = build.exclude_paths(str(REPO), patterns, dockerfile="Dockerfile")
    sources = copy_sources()
    assert {"pyproject.toml", "app", "vtfpar"} <= set(sources), sources
    for source in sources:
        assert source in sent, f"COPY {source}: .dockerignore keeps it out of the build context"
        if (REPO / source).is_dir():
            python = {str(p.relative_to(REPO)) for p in (REPO / source).rglob("*.py") if "__pycache__" not in p.parts}
            assert python and python <= sent, f"COPY {source}: files kept out: {sorted(python - sent)[:5]}"


def test_the_context_leaves_out_the_venv_and_the_tests():
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    sent = build.exclude_paths(str(REPO), patterns, dockerfile="Dockerfile")
    assert not any(Path(path).parts[0] in (".venv", "tests", ".git", "benchmarks") for path in sent)
