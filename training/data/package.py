"""The VTFPAR++ data package (Event-AHU's padded frames + re-encoded labels) for MARS and Duke.

Layout, with the file names the package uses (``ROOT`` is what ``--data`` points at)::

    MARS: ROOT/new_encoded2.csv  ROOT/base_train.txt     ROOT/base_test.txt  ROOT/pad_mars_dataset/<track>/*.jpg
    Duke: ROOT/new_encoded.csv   ROOT/trainval_name.txt  ROOT/test_name.txt  ROOT/pad_duke_dataset/<track>/*.jpg

The CSV has a header row, then one row per tracklet: the tracklet (folder) name and one 0/1 value per schema
column (43 for ``mars``, 36 for ``duke``), read by position in the schema's column order. The split lists hold
one tracklet name per line. Duke folders are DukeMTMC-VideoReID's ``<seq>/<view>`` flattened to ``<seq><view>``.

Identities: MARS tracklets are named as MARS names them (``<pid:04d>C<cam>T<tracklet:04d>``) and Duke's as
``<pid:04d><tracklet:04d>``, so the first four digits are the person id; a name that does not start with four
digits counts as its own identity.

MARS columns 1 and 8: this project's ``mars`` schema puts "bottom short" at column 1 and "bottom skirt" at 8
(the raw MARS order); VTFPAR++'s own phrase list names them the other way round (docs/method.md §3.2). Heads are
per column, so training learns whatever the package's columns hold; only the text phrase attached differs.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import load_schema

from .records import DatasetError, Problems, Tracklet, TrackletSet, frame_files, require_file


@dataclass(frozen=True)
class PackageLayout:
    schema: str
    labels: str
    train_list: str
    test_list: str
    frames: str


PERSON_ID = re.compile(r"^\d{4}")

LAYOUTS = {
    "mars": PackageLayout("mars", "new_encoded2.csv", "base_train.txt", "base_test.txt", "pad_mars_dataset"),
    "duke": PackageLayout("duke", "new_encoded.csv", "trainval_name.txt", "test_name.txt", "pad_duke_dataset"),
}


def identity_of(name: str) -> str:
    """The person id a tracklet name starts with (see the module docstring), else the name itself."""
    match = PERSON_ID.match(name)
    return match[0] if match else name


def detect_package(root: Path) -> str | None:
    """``mars`` or ``duke`` when ``root`` holds that package's label file, else None."""
    for name, layout in LAYOUTS.items():
        if (root / layout.labels).is_file():
            return name
    return None


def _read_labels(path: Path, num_columns: int) -> dict[str, tuple[int, np.ndarray]]:
    problems = Problems(str(path))
    labels: dict[str, tuple[int, np.ndarray]] = {}
    with open(path, newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)  # header
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            where = f"{path}:{line}"
            if len(row) != num_columns + 1:
                problems.add(f"{where}: {len(row)} values, expected the tracklet name and {num_columns} labels")
                continue
            name, values = row[0].strip(), [v.strip() for v in row[1:]]
            bad = [(i, v) for i, v in enumerate(values) if v not in ("0", "1")]
            if bad:
                problems.add(f"{where}: label column {bad[0][0]} is {bad[0][1]!r}, expected 0 or 1")
            elif name in labels:
                problems.add(f"{where}: tracklet {name!r} already labelled on line {labels[name][0]}")
            else:
                labels[name] = (line, np.array([v == "1" for v in values], dtype=np.uint8))
    if not labels and not problems.count:
        problems.add("no tracklet rows")
    problems.raise_if_any()
    return labels


def load_package(root: str | Path, dataset: str) -> TrackletSet:
    """Read the VTFPAR++ package of ``dataset`` (``mars`` or ``duke``) under ``root``."""
    root = Path(root)
    if dataset not in LAYOUTS:
        raise DatasetError(f"unknown VTFPAR++ package {dataset!r}; expected one of {sorted(LAYOUTS)}")
    layout = LAYOUTS[dataset]
    schema = load_schema(layout.schema)
    labels_path = require_file(root / layout.labels, f"VTFPAR++ {dataset} label file")
    frames_root = root / layout.frames
    if not frames_root.is_dir():
        raise DatasetError(f"VTFPAR++ {dataset} frame folder {frames_root} does not exist")
    labels = _read_labels(labels_path, len(schema))

    problems = Problems(f"VTFPAR++ {dataset} package at {root}")
    splits: dict[str, list[Tracklet]] = {}
    seen: dict[str, str] = {}
    for split, list_name in (("train", layout.train_list), ("test", layout.test_list)):
        list_path = require_file(root / list_name, f"{split} split list")
        splits[split] = []
        for line, text in enumerate(list_path.read_text().splitlines(), start=1):
            name = text.strip()
            if not name:
                continue
            where = f"{list_path}:{line}"
            if name not in labels:
                problems.add(f"{where}: unknown tracklet {name!r}: no row in {labels_path.name}")
                continue
            if name in seen:
                problems.add(f"{where}: tracklet {name!r} is also listed at {seen[name]}")
                continue
            seen[name] = where
            folder = frames_root / name
            frames = frame_files(folder) if folder.is_dir() else ()
            if not frames:
                state = "is empty" if folder.is_dir() else "does not exist"
                problems.add(f"{where}: tracklet {name!r}: frame folder {folder} {state}")
                continue
            tracklet = Tracklet(name=name, identity=identity_of(name), labels=labels[name][1], frame_files=frames)
            splits[split].append(tracklet)
    problems.raise_if_any()
    return TrackletSet(
        schema=schema, train=splits["train"], test=splits["test"], description=f"VTFPAR++ {dataset} package at {root}"
    )
