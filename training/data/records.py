"""What every dataset reader produces: labelled tracklets split into train and test, or a clear error.

A tracklet is either a list of frame image files in temporal order or one video file (decoded on read). Labels
are the schema's binary columns (one-hot for one-of-N groups) as ``uint8``. Its ``identity`` is the person it
shows (MARS and Duke person ids; a manifest's optional ``identity`` column): tracklets of one person stay on
one side of the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model import AttributeSchema

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
# A reader stops after this many problems: enough to see a pattern, not a wall of text.
MAX_REPORTED_PROBLEMS = 10


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Tracklet:
    name: str
    identity: str
    labels: np.ndarray
    frame_files: tuple[Path, ...] = ()
    video: Path | None = None


@dataclass
class TrackletSet:
    schema: AttributeSchema
    train: list[Tracklet]
    test: list[Tracklet]
    description: str

    def split(self, name: str) -> list[Tracklet]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train' or 'test'")
        return self.train if name == "train" else self.test

    def summary(self) -> str:
        return (
            f"{self.description}: {len(self.train)} train / {len(self.test)} test tracklets, "
            f"schema {self.schema.name!r} ({len(self.schema)} attributes)"
        )


@dataclass
class Problems:
    """Collects a reader's problems so the user sees several at once, then raises them together."""

    subject: str
    messages: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < MAX_REPORTED_PROBLEMS:
            self.messages.append(message)

    def raise_if_any(self) -> None:
        if not self.count:
            return
        more = f"\n  ... and {self.count - len(self.messages)} more" if self.count > len(self.messages) else ""
        raise DatasetError(f"{self.subject}: {self.count} problem(s):\n  " + "\n  ".join(self.messages) + more)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist")
    return path


def frame_files(folder: Path) -> tuple[Path, ...]:
    """The image files of a tracklet folder, in name (= time) order."""
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES))
