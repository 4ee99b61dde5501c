"""The one way this project writes a ``.safetensors`` file: atomically, and readable by other users.

Checkpoints and the trainer's resume state both go through here. A reader (a server, an evaluator, a resumed run)
never sees a half-written file: the tensors go to a temporary file in the same folder, which then replaces the
target in one rename.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

# mkstemp creates owner-only files; a server running as another user must be able to read a checkpoint.
FILE_MODE = 0o644


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` (contiguous, on the CPU) with string ``metadata`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
