"""The original MARS-Attribute layout: mars_attributes.csv + bbox_train/ and bbox_test/ frame folders."""

from pathlib import Path

import numpy as np
import pytest

from training.data.mars import HEADER, HEADER_V1, load_mars, read_label_file
from training.data.records import DatasetError
from training.data.sources import load_dataset

from .conftest import REPO, write_frame

REAL_LABELS = REPO.parent / "shared" / "data" / "mars_attributes.csv"
# Three rows of the published file (first release: no pose/motion).
REAL_ROWS = ["1,2,58,8,0,1,1,1,0,0,0,0,1,1,0", "1,5,165,5,0,1,1,1,0,0,0,0,1,1,0", "1500,1,2,2,4,1,1,1,0,1,0,0,0,0,1"]


def make_mars(root: Path, header, rows, frames: dict[str, list[str]]) -> Path:
    """``frames``: split folder -> frame file names."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mars_attributes.csv").write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    for folder in ("bbox_train", "bbox_test"):
        (root / folder).mkdir(exist_ok=True)
        for name in frames.get(folder, []):
            write_frame(root / folder / name[:4] / name)
    return root


@pytest.fixture
def later_release(tmp_path):
    rows = [
        # pid cam trk Tops.c Bottoms.c Age Tops.l Bottoms.l sbag backpack hat handbag hair gender Bottoms.t pose motion
        "3,1,1,8,2,2,1,0,1,0,0,0,1,1,0,5,4",
        "3,2,1,0,9,0,0,1,0,1,1,1,0,0,1,0,0",
        "8,1,4,5,1,3,1,1,0,0,0,0,0,0,1,4,2",
    ]
    frames = {
        "bbox_train": [
            "0003C1T0001F010.jpg",
            "0003C1T0001F002.jpg",
            "0003C1T0001F001.jpg",
            "0003C2T0001F001.jpg",
            "0003C3T0009F001.jpg",
        ],  # the last one has no row: ignored
        "bbox_test": ["0008C1T0004F001.jpg", "0008C1T0004F002.jpg"],
    }
    return make_mars(tmp_path / "mars", HEADER, rows, frames)


def columns_set(schema, labels):
    return {schema.names[i] for i in np.nonzero(labels)[0]}


def test_later_release_reads_into_the_43_column_schema_with_split_by_folder(later_release):
    data = load_mars(later_release)
    assert data.schema.name == "mars" and len(data.schema) == 43
    assert sorted(t.name for t in data.train) == ["0003C1T0001", "0003C2T0001"]
    assert [t.name for t in data.test] == ["0008C1T0004"]
    first = next(t for t in data.train if t.name == "0003C1T0001")
    assert [p.name for p in first.frame_files] == ["0003C1T0001F001.jpg", "0003C1T0001F002.jpg", "0003C1T0001F010.jpg"]
    assert first.identity == "0003"


def test_raw_values_map_onto_binary_and_one_hot_columns_with_documented_polarity(later_release):
    data = load_mars(later_release)
    by_name = {t.name: t for t in data.train + data.test}
    # Tops.c 8 complex, Bottoms.c 2 black, Age 2 adult, Tops.l 1 short, Bottoms.l 0 long, shoulder bag,
    # hair 1 long, gender 1 female, Bottoms.t 0 skirt, pose 5 varies, motion 4 varies.
    assert columns_set(data.schema, by_name["0003C1T0001"].labels) == {
        "top_complex",
        "bottom_black",
        "age_adult",
        "top_short",
        "shoulder_bag",
        "long_hair",
        "female",
        "bottom_skirt",
        "pose_varies",
        "motion_varies",
    }
    # Bottoms.t 1 = trousers: no skirt; Bottoms.l 1 = short; backpack, hat, handbag present.
    assert columns_set(data.schema, by_name["0003C2T0001"].labels) == {
        "top_black",
        "bottom_complex",
        "age_young",
        "bottom_short",
        "backpack",
        "hat",
        "hand_bag",
        "pose_frontal",
        "motion_walking",
    }
    assert columns_set(data.schema, by_name["0008C1T0004"].labels) == {
        "top_white",
        "bottom_purple",
        "age_old",
        "top_short",
        "bottom_short",
        "pose_back",
        "motion_riding",
    }
    for tracklet in data.train + data.test:
        for group in data.schema.groups:
            if group.kind == "one_of":
                assert tracklet.labels[list(group.columns)].sum() == 1


def test_first_release_header_gives_the_32_column_schema(tmp_path):
    frames = {"bbox_train": ["0001C2T0058F001.jpg", "0001C5T0165F001.jpg"], "bbox_test": ["1500C1T0002F001.jpg"]}
    root = make_mars(tmp_path / "v1", HEADER_V1, REAL_ROWS, frames)
    data = load_dataset(root)
    assert data.schema.name == "mars-v1" and len(data.schema) == 32
    assert (len(data.train), len(data.test)) == (2, 1)
    # Real row "1,2,58,8,0,1,1,1,0,0,0,0,1,1,0": complex top, white bottom, teenager, short sleeves, short
    # bottom, long hair, female, Bottoms.t 0 = skirt.
    first = next(t for t in data.train if t.name == "0001C2T0058")
    assert columns_set(data.schema, first.labels) == {
        "top_complex",
        "bottom_white",
        "age_teenager",
        "top_short",
        "bottom_short",
        "long_hair",
        "female",
        "bottom_skirt",
    }


@pytest.mark.skipif(not REAL_LABELS.is_file(), reason=f"the published MARS label file is not at {REAL_LABELS}")
def test_every_row_of_the_published_label_file_parses():
    schema, rows = read_label_file(REAL_LABELS)
    assert schema.name == "mars-v1" and len(rows) == 16360
    labels = np.stack([labels for _, labels in rows.values()])
    counts = dict(zip(schema.names, labels.sum(axis=0).tolist(), strict=True))
    # docs/method.md §3.3's value counts, through the documented polarity.
    assert counts["top_short"] == 15334 and counts["bottom_short"] == 9975 and counts["bottom_skirt"] == 2249
    assert counts["female"] == 6771 and counts["long_hair"] == 5571 and counts["hat"] == 552
    assert counts["age_teenager"] == 13161 and counts["bottom_purple"] == 15


def expect_error(root, *fragments):
    with pytest.raises(DatasetError) as info:
        load_mars(root)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_missing_label_file_and_frame_folders(tmp_path):
    expect_error(tmp_path, "mars_attributes.csv", "does not exist")
    (tmp_path / "mars_attributes.csv").write_text(",".join(HEADER) + "\n")
    expect_error(tmp_path, "bbox_train", "missing")


def test_malformed_rows_name_file_and_line(tmp_path):
    rows = [
        "3,1,1,8,2,2,1,0,1,0,0,0,1,1,0,5,4",
        "3,1,2,x,2,2,1,0,1,0,0,0,1,1,0,5,4",
        "3,1,3,9,2,2,1,0,1,0,0,0,1,1,0,5,4",
        "3,1,4,8,2,2,1,0",
        "3,1,1,8,2,2,1,0,1,0,0,0,1,1,0,5,4",
        "3,1,5,8,2,2,1,0,1,0,0,0,1,1,0,5,5",
    ]
    root = make_mars(tmp_path, HEADER, rows, {"bbox_train": ["0003C1T0001F001.jpg"]})
    message = expect_error(root, "5 problem(s)")
    csv_path = root / "mars_attributes.csv"
    assert f"{csv_path}:3: column 'Tops.c' is 'x', not an integer" in message
    assert f"{csv_path}:4: column 'Tops.c' is 9, expected 0..8" in message
    assert f"{csv_path}:5: expected 17 comma-separated values" in message
    assert f"{csv_path}:6: tracklet 0003C1T0001 already labelled on line 2" in message
    assert f"{csv_path}:7: column 'motion' is 5, expected 0..4" in message


def test_tracklet_without_frames_names_the_line(tmp_path):
    rows = ["3,1,1,8,2,2,1,0,1,0,0,0,1,1,0,5,4", "3,2,7,8,2,2,1,0,1,0,0,0,1,1,0,5,4"]
    root = make_mars(tmp_path, HEADER, rows, {"bbox_train": ["0003C1T0001F001.jpg"]})
    expect_error(
        root,
        f"{root / 'mars_attributes.csv'}:3: tracklet 0003C2T0007 has no frames",
        "bbox_train/0003/ or bbox_test/0003/",
    )


def test_header_problems(tmp_path):
    make_mars(tmp_path / "a", HEADER_V1[:-1], [], {})
    expect_error(tmp_path / "a", "mars_attributes.csv:1: header lacks column(s) ['Bottoms.t']")
    make_mars(tmp_path / "b", HEADER_V1 + ("pose",), [], {})
    expect_error(tmp_path / "b", "header has ['pose'] but not both")


def test_auto_detection_rejects_an_unknown_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a known dataset layout"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
