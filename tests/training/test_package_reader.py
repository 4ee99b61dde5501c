"""The VTFPAR++ data package layout (re-encoded 0/1 CSV + split lists + padded tracklet folders)."""

from pathlib import Path

import numpy as np
import pytest

from training.data.package import LAYOUTS, identity_of, load_package
from training.data.records import DatasetError
from training.data.sources import load_dataset

from .conftest import write_frame


def make_package(
    root: Path,
    dataset: str,
    rows: dict[str, list[int]],
    train: list[str],
    test: list[str],
    folders: dict[str, int] | None = None,
) -> Path:
    """``folders``: tracklet -> number of frames (default: 2 for every labelled tracklet)."""
    layout = LAYOUTS[dataset]
    root.mkdir(parents=True, exist_ok=True)
    width = len(next(iter(rows.values()))) if rows else 0
    lines = ["name," + ",".join(f"a{i}" for i in range(width))]
    lines += [name + "," + ",".join(str(v) for v in values) for name, values in rows.items()]
    (root / layout.labels).write_text("\n".join(lines) + "\n")
    (root / layout.train_list).write_text("\n".join(train) + "\n")
    (root / layout.test_list).write_text("\n".join(test) + "\n")
    (root / layout.frames).mkdir(exist_ok=True)
    for name, count in (folders if folders is not None else {n: 2 for n in rows}).items():
        (root / layout.frames / name).mkdir(parents=True, exist_ok=True)
        for frame in range(count):
            write_frame(root / layout.frames / name / f"{frame:04d}.jpg")
    return root


def row(width, ones):
    values = [0] * width
    for i in ones:
        values[i] = 1
    return values


def test_mars_package_reads_labels_by_position_and_splits_by_lists(tmp_path):
    rows = {"0001C1T0001": row(43, [0, 9, 15, 20, 29, 40]), "0002C3T0004": row(43, [7, 14, 19, 28, 38, 42])}
    root = make_package(tmp_path, "mars", rows, ["0001C1T0001"], ["0002C3T0004"])
    data = load_dataset(root)
    assert data.schema.name == "mars" and data.description.startswith("VTFPAR++ mars package")
    (train,), (test,) = data.train, data.test
    assert train.name == "0001C1T0001" and len(train.frame_files) == 2
    assert (train.identity, test.identity) == ("0001", "0002")  # the person id the name starts with
    assert identity_of("cam7-walker") == "cam7-walker"  # no person id: its own identity
    assert [data.schema.names[i] for i in np.nonzero(test.labels)[0]] == [
        "female",
        "pose_varies",
        "motion_varies",
        "top_complex",
        "bottom_complex",
        "age_old",
    ]


def test_duke_package_uses_its_own_file_names_and_36_columns(tmp_path):
    rows = {"00010001": row(36, [0, 8, 14, 19, 28]), "00020003": row(36, [4, 13, 18, 27, 35])}
    root = make_package(tmp_path, "duke", rows, ["00010001"], ["00020003"])
    data = load_dataset(root)
    assert data.schema.name == "duke" and len(data.schema) == 36
    assert [t.name for t in data.train] == ["00010001"]
    assert [data.schema.names[i] for i in np.nonzero(data.train[0].labels)[0]] == [
        "backpack",
        "pose_frontal",
        "motion_walking",
        "top_black",
        "bottom_black",
    ]


def test_split_list_problems_name_the_list_file_and_line(tmp_path):
    rows = {"a": row(36, [0]), "b": row(36, [1]), "c": row(36, [2])}
    root = make_package(tmp_path, "duke", rows, ["a", "", "ghost", "b"], ["a", "c"], folders={"a": 1, "b": 0})
    with pytest.raises(DatasetError) as info:
        load_package(root, "duke")
    message = str(info.value)
    train_list, test_list = root / "trainval_name.txt", root / "test_name.txt"
    assert f"{train_list}:3: unknown tracklet 'ghost': no row in new_encoded.csv" in message
    assert f"{train_list}:4: tracklet 'b': frame folder {root / 'pad_duke_dataset' / 'b'} is empty" in message
    assert f"{test_list}:1: tracklet 'a' is also listed at {train_list}:1" in message
    assert f"{test_list}:2: tracklet 'c': frame folder {root / 'pad_duke_dataset' / 'c'} does not exist" in message


def test_label_file_problems_name_the_line(tmp_path):
    root = make_package(tmp_path, "mars", {"a": row(43, [0])}, ["a"], [])
    labels = root / "new_encoded2.csv"
    labels.write_text(
        labels.read_text()
        + "b,"
        + ",".join(["0"] * 42)
        + "\n"
        + "c,"
        + ",".join(["2"] * 43)
        + "\n"
        + "a,"
        + ",".join(["0"] * 43)
        + "\n"
    )
    with pytest.raises(DatasetError) as info:
        load_package(root, "mars")
    message = str(info.value)
    assert f"{labels}:3: 43 values, expected the tracklet name and 43 labels" in message
    assert f"{labels}:4: label column 0 is '2', expected 0 or 1" in message
    assert f"{labels}:5: tracklet 'a' already labelled on line 2" in message


def test_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="new_encoded2.csv does not exist"):
        load_package(tmp_path, "mars")
    root = make_package(tmp_path / "p", "mars", {"a": row(43, [0])}, ["a"], ["a"])
    (root / "base_test.txt").unlink()
    with pytest.raises(DatasetError, match="test split list .*base_test.txt does not exist"):
        load_package(root, "mars")
