"""A generic manifest, so users can train on their own videos or frame folders.

CSV (header row) or JSONL (one object per line), one tracklet per row:

- ``path``: a video file (anything PyAV decodes: mp4, webm, avi, ...) or a folder of frame images, relative
  to the manifest's folder unless absolute;
- ``split``: ``train`` or ``test``;
- one column per attribute of the schema (its ``name``, e.g. ``female``, ``motion_walking``), 0 or 1; every
  one-of group needs exactly one 1;
- optionally ``identity``: the person the tracklet shows (any text). Tracklets of one identity stay on one side
  of the validation split; a row without one counts as its own identity, so two clips of one person may then
  land on both sides and the validation scores come out optimistic.

A clip may appear once: two rows naming the same file or folder (``a.mp4`` and ``./a.mp4``), in one split or
across splits, are refused with both lines named. Extra columns are ignored. Videos are opened here to check
they have a video stream; frames are decoded when training reads them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np

from model import AttributeSchema

from .records import Problems, Tracklet, TrackletSet, frame_files, require_file

SPLITS = ("train", "test")


def _rows(path: Path, problems: Problems) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.add(f"{path}:{line}: not valid JSON: {exc.msg}")
                continue
            if not isinstance(row, dict):
                problems.add(f"{path}:{line}: expected a JSON object")
                continue
            rows.append((line, row))
        return rows
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return [(line, row) for line, row in enumerate(reader, start=2)]


def _check_video(path: Path) -> str | None:
    """None if ``path`` opens and has a video stream, else what is wrong."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "has no video stream"
    except (av.FFmpegError, OSError, ValueError) as exc:
        return f"cannot be opened as a video ({exc})"
    return None


def _labels(row: dict, schema: AttributeSchema, where: str, problems: Problems) -> np.ndarray | None:
    missing = [name for name in schema.names if name not in row]
    if missing:
        problems.add(f"{where}: missing attribute column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        return None
    labels = np.zeros(len(schema), dtype=np.uint8)
    for column, name in enumerate(schema.names):
        value = str(row[name]).strip()
        if value not in ("0", "1"):
            problems.add(f"{where}: attribute {name!r} is {value!r}, expected 0 or 1")
            return None
        labels[column] = value == "1"
    for group in schema.groups:
        if group.kind == "one_of" and labels[list(group.columns)].sum() != 1:
            problems.add(
                f"{where}: one-of group {group.name!r} needs exactly one 1 among "
                f"{[schema.names[c] for c in group.columns]}"
            )
            return None
    return labels


def _tracklet(
    media: Path, name: str, identity: str, labels: np.ndarray, where: str, problems: Problems
) -> Tracklet | None:
    if media.is_dir():
        files = frame_files(media)
        if not files:
            problems.add(f"{where}: frame folder {media} has no .jpg/.jpeg/.png files")
            return None
        return Tracklet(name=name, identity=identity, labels=labels, frame_files=files)
    if media.is_file():
        reason = _check_video(media)
        if reason:
            problems.add(f"{where}: video {media} {reason}")
            return None
        return Tracklet(name=name, identity=identity, labels=labels, video=media)
    problems.add(f"{where}: {media} does not exist")
    return None


def load_manifest(path: str | Path, schema: AttributeSchema) -> TrackletSet:
    """Read a CSV or JSONL manifest labelled with ``schema``'s attribute names."""
    path = require_file(Path(path), "manifest")
    problems = Problems(str(path))
    splits: dict[str, list[Tracklet]] = {split: [] for split in SPLITS}
    listed: dict[Path, str] = {}  # resolved clip -> the line that listed it first
    for line, row in _rows(path, problems):
        where = f"{path}:{line}"
        source, split = str(row.get("path") or "").strip(), str(row.get("split") or "").strip()
        identity = str(row.get("identity") or "").strip() if "identity" in row else source
        if not source:
            problems.add(f"{where}: empty 'path'")
            continue
        if split not in SPLITS:
            problems.add(f"{where}: split is {split!r}, expected one of {SPLITS}")
            continue
        if not identity:
            problems.add(f"{where}: empty 'identity' (leave the column out where identities are unknown)")
            continue
        labels = _labels(row, schema, where, problems)
        if labels is None:
            continue
        media = Path(source) if Path(source).is_absolute() else path.parent / source
        resolved = media.resolve()
        if resolved in listed:
            problems.add(f"{where}: {media} is the clip already listed at {listed[resolved]}")
            continue
        listed[resolved] = where
        tracklet = _tracklet(media, source, identity, labels, where, problems)
        if tracklet is not None:
            splits[split].append(tracklet)
    if not problems.count and not splits["train"] and not splits["test"]:
        problems.add("no rows")
    problems.raise_if_any()
    return TrackletSet(schema=schema, train=splits["train"], test=splits["test"], description=f"manifest {path}")
