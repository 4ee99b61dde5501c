"""MARS-Attribute as its authors released it: ``mars_attributes.csv`` next to MARS's frame folders.

Layout (``ROOT`` is what ``--data`` points at)::

    ROOT/mars_attributes.csv
    ROOT/bbox_train/<pid:04d>/<pid:04d>C<cam>T<tracklet:04d>F<frame:03d>.jpg
    ROOT/bbox_test/<pid:04d>/...

One CSV row per tracklet, keyed by (person-id, camera, tracklet), with one integer per attribute *kind*. The
split is where the tracklet's frames are: MARS puts its train identities under ``bbox_train/`` and its test
identities under ``bbox_test/``, which gives the 8,298 / 8,062 tracklet split of docs/method.md §3.1. Frames of
tracklets without a row (MARS's distractors and junk identities) are ignored. A tracklet's identity is its
person id.

Two releases exist. The first (the published file, 16,360 rows) has 12 kinds and maps onto the 32-column
``mars-v1`` schema. The later release adds ``pose`` (0-5 = frontal, lateral-frontal, lateral, lateral-back,
back, varies) and ``motion`` (0-4 = walking, running, riding, staying, varies) and maps onto the 43-column
``mars`` schema; the synthetic generator writes that form. Columns are found by header name.

Polarity of the raw binary kinds. The definitions are Market-1501_Attribute's, where each binary attribute is
1 or 2; the MARS file stores that value minus 1. Hence:

- ``Tops.l`` 1 = short sleeves -> ``top_short`` (phrase "top short") = raw value;
- ``Bottoms.l`` 1 = short lower-body clothing -> ``bottom_short`` = raw value;
- ``Bottoms.t`` 0 = dress/skirt, 1 = pants -> ``bottom_skirt`` = 1 when ``Bottoms.t`` is 0;
- ``hair`` 1 = long -> ``long_hair``; ``gender`` 1 = female -> ``female``;
- ``shoulder bag``, ``backpack``, ``hat``, ``handbag`` 1 = present.

Multi-class kinds (``Tops.c``, ``Bottoms.c``, ``Age``, ``pose``, ``motion``) become one-hot columns; the raw
class index k is the k-th column of the group, in the order listed in ``ONE_OF_KINDS``.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from model import AttributeSchema, load_schema

from .records import DatasetError, Problems, Tracklet, TrackletSet, require_file

LABEL_FILE = "mars_attributes.csv"
SPLIT_FOLDERS = {"train": "bbox_train", "test": "bbox_test"}
KEY_COLUMNS = ("person-id", "camera", "tracklet")

# raw kind -> (schema attribute, raw value meaning "attribute present")
BINARY_KINDS = {
    "Tops.l": ("top_short", 1),
    "Bottoms.l": ("bottom_short", 1),
    "shoulder bag": ("shoulder_bag", 1),
    "backpack": ("backpack", 1),
    "hat": ("hat", 1),
    "handbag": ("hand_bag", 1),
    "hair": ("long_hair", 1),
    "gender": ("female", 1),
    "Bottoms.t": ("bottom_skirt", 0),
}
# raw kind -> the schema attribute of each raw class index
ONE_OF_KINDS = {
    "Tops.c": (
        "top_black",
        "top_purple",
        "top_green",
        "top_blue",
        "top_gray",
        "top_white",
        "top_yellow",
        "top_red",
        "top_complex",
    ),
    "Bottoms.c": (
        "bottom_white",
        "bottom_purple",
        "bottom_black",
        "bottom_green",
        "bottom_gray",
        "bottom_pink",
        "bottom_yellow",
        "bottom_blue",
        "bottom_brown",
        "bottom_complex",
    ),
    "Age": ("age_young", "age_teenager", "age_adult", "age_old"),
    "pose": ("pose_frontal", "pose_lateral_frontal", "pose_lateral", "pose_lateral_back", "pose_back", "pose_varies"),
    "motion": ("motion_walking", "motion_running", "motion_riding", "motion_staying", "motion_varies"),
}
LATER_RELEASE_KINDS = ("pose", "motion")
# The published file's column order; the later release appends pose and motion.
HEADER_V1 = KEY_COLUMNS + (
    "Tops.c",
    "Bottoms.c",
    "Age",
    "Tops.l",
    "Bottoms.l",
    "shoulder bag",
    "backpack",
    "hat",
    "handbag",
    "hair",
    "gender",
    "Bottoms.t",
)
HEADER = HEADER_V1 + LATER_RELEASE_KINDS

FRAME_NAME = re.compile(r"^(\d{4})C(\d)T(\d{4})F(\d{3,})\.jpg$")


def tracklet_name(pid: int, camera: int, tracklet: int) -> str:
    return f"{pid:04d}C{camera}T{tracklet:04d}"


def frame_name(pid: int, camera: int, tracklet: int, frame: int) -> str:
    return f"{tracklet_name(pid, camera, tracklet)}F{frame:03d}.jpg"


def is_mars_layout(root: Path) -> bool:
    return (root / LABEL_FILE).is_file()


def encode_labels(raw: dict[str, int], schema: AttributeSchema) -> np.ndarray:
    """One row's per-kind integers -> the schema's 0/1 columns (values already range-checked)."""
    labels = np.zeros(len(schema), dtype=np.uint8)
    for kind, (attribute, present) in BINARY_KINDS.items():
        labels[schema.index(attribute)] = raw[kind] == present
    for kind, attributes in ONE_OF_KINDS.items():
        if kind in raw:
            labels[schema.index(attributes[raw[kind]])] = 1
    return labels


def _parse_row(row: dict[str, str], kinds: tuple[str, ...], where: str, problems: Problems) -> dict[str, int] | None:
    values = {}
    for kind in kinds:
        text = (row.get(kind) or "").strip()
        try:
            value = int(text)
        except ValueError:
            problems.add(f"{where}: column {kind!r} is {text!r}, not an integer")
            return None
        if kind in KEY_COLUMNS:
            valid = value >= 0 and (kind != "camera" or 1 <= value <= 9)
        else:
            valid = 0 <= value < (len(ONE_OF_KINDS[kind]) if kind in ONE_OF_KINDS else 2)
        if not valid:
            allowed = (
                f"0..{len(ONE_OF_KINDS[kind]) - 1}"
                if kind in ONE_OF_KINDS
                else "1..9"
                if kind == "camera"
                else ">= 0"
                if kind in KEY_COLUMNS
                else "0 or 1"
            )
            problems.add(f"{where}: column {kind!r} is {value}, expected {allowed}")
            return None
        values[kind] = value
    return values


def _index_frames(root: Path, pids: set[int]) -> dict[tuple[int, int, int], tuple[str, list[Path]]]:
    """(pid, camera, tracklet) -> (split, frame files in frame order), listing only the identities needed."""
    index: dict[tuple[int, int, int], tuple[str, list[Path]]] = {}
    for split, folder_name in SPLIT_FOLDERS.items():
        found: dict[tuple[int, int, int], list[tuple[int, Path]]] = defaultdict(list)
        for pid in pids:
            folder = root / folder_name / f"{pid:04d}"
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = FRAME_NAME.match(path.name)
                if match:
                    key = (int(match[1]), int(match[2]), int(match[3]))
                    found[key].append((int(match[4]), path))
        for key, frames in found.items():
            if key in index:
                index[key] = ("both", [])
            else:
                index[key] = (split, [path for _, path in sorted(frames)])
    return index


def read_label_file(csv_path: str | Path) -> tuple[AttributeSchema, dict[tuple[int, int, int], tuple[int, np.ndarray]]]:
    """Parse ``mars_attributes.csv``: its schema (``mars`` or ``mars-v1`` by header) and
    (person-id, camera, tracklet) -> (line number, labels). Raises :class:`DatasetError` naming file and line."""
    csv_path = require_file(Path(csv_path), "MARS-Attribute label file")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = tuple(name.strip() for name in (reader.fieldnames or ()))
        reader.fieldnames = list(header)
        absent = [name for name in HEADER_V1 if name not in header]
        if absent:
            raise DatasetError(
                f"{csv_path}:1: header lacks column(s) {absent}; expected {','.join(HEADER)} (pose and motion optional)"
            )
        later = [name for name in LATER_RELEASE_KINDS if name in header]
        if later and len(later) != len(LATER_RELEASE_KINDS):
            raise DatasetError(f"{csv_path}:1: header has {later} but not both of {list(LATER_RELEASE_KINDS)}")
        kinds = HEADER if later else HEADER_V1
        schema = load_schema("mars" if later else "mars-v1")

        problems = Problems(str(csv_path))
        rows: dict[tuple[int, int, int], tuple[int, np.ndarray]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line}"
            if None in row or any(value is None for value in row.values()):
                problems.add(f"{where}: expected {len(header)} comma-separated values")
                continue
            values = _parse_row(row, kinds, where, problems)
            if values is None:
                continue
            key = (values["person-id"], values["camera"], values["tracklet"])
            if key in rows:
                problems.add(f"{where}: tracklet {tracklet_name(*key)} already labelled on line {rows[key][0]}")
                continue
            rows[key] = (line, encode_labels(values, schema))
    if not rows and not problems.count:
        problems.add("no tracklet rows")
    problems.raise_if_any()
    return schema, rows


def load_mars(root: str | Path) -> TrackletSet:
    """Read the original MARS-Attribute layout under ``root`` (see the module docstring)."""
    root = Path(root)
    csv_path = require_file(root / LABEL_FILE, "MARS-Attribute label file")
    missing_folders = [name for name in SPLIT_FOLDERS.values() if not (root / name).is_dir()]
    if missing_folders:
        raise DatasetError(f"{root}: MARS frame folder(s) {missing_folders} missing next to {LABEL_FILE}")
    schema, rows = read_label_file(csv_path)

    index = _index_frames(root, {pid for pid, _, _ in rows})
    problems = Problems(str(root))
    splits: dict[str, list[Tracklet]] = {"train": [], "test": []}
    for key, (line, labels) in rows.items():
        name = tracklet_name(*key)
        split, files = index.get(key, ("", []))  # "": no frames found
        if split == "both":
            problems.add(f"{csv_path}:{line}: tracklet {name} has frames in both bbox_train/ and bbox_test/")
        elif not files:
            problems.add(
                f"{csv_path}:{line}: tracklet {name} has no frames: expected {name}F*.jpg in "
                f"bbox_train/{key[0]:04d}/ or bbox_test/{key[0]:04d}/"
            )
        else:
            tracklet = Tracklet(name=name, identity=f"{key[0]:04d}", labels=labels, frame_files=tuple(files))
            splits[split].append(tracklet)
    problems.raise_if_any()
    release = "later release, with pose and motion" if schema.name == "mars" else "first release"
    return TrackletSet(
        schema=schema, train=splits["train"], test=splits["test"], description=f"MARS-Attribute ({release}) at {root}"
    )
