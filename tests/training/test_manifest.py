"""The generic manifest (CSV or JSONL; a video or a frame folder per row) so users can train on their own data."""

import csv
import json

import numpy as np
import pytest

from model import Preprocess, load_schema
from training.data.dataset import ClipDataset
from training.data.frames import FrameReader
from training.data.manifest import load_manifest
from training.data.records import DatasetError
from training.data.sources import load_dataset
from training.synthetic.tracklets import generate

from .conftest import write_frame


def duke_row(schema, path, split, ones):
    row = {"path": path, "split": split, **{name: 0 for name in schema.names}}
    row.update({name: 1 for name in ones})
    return row


def test_synthetic_videos_manifest_reads_and_decodes(tmp_path):
    root = generate(tmp_path / "syn", tracklets=6, seed=1, frames_per_tracklet=(5, 5), size=(64, 32), videos="webm")
    data = load_dataset(root / "videos" / "manifest.csv")
    assert data.schema.name == "mars" and len(data.train) + len(data.test) == 6
    mars = load_dataset(root)  # the same tracklets through the MARS reader carry the same labels
    by_name = {t.name: t.labels for t in mars.train + mars.test}
    for tracklet in data.train + data.test:
        assert tracklet.video is not None
        assert np.array_equal(tracklet.labels, by_name[tracklet.name.removesuffix(".webm")])
    reader = FrameReader(data.train[0] if data.train else data.test[0])
    assert len(reader) == 5 and reader[0].shape == (64, 32, 3)


def test_jsonl_manifest_with_frame_folders_and_mp4(tmp_path):
    schema = load_schema("duke")
    syn = generate(tmp_path / "syn", tracklets=2, seed=2, frames_per_tracklet=(4, 4), size=(32, 16), videos="mp4")
    video = next((syn / "videos").glob("*.mp4"))
    for i in range(3):
        write_frame(tmp_path / "clips" / "walker" / f"{i:03d}.png")
    rows = [
        duke_row(schema, "clips/walker", "train", ["female", "pose_back", "motion_running", "top_red", "bottom_blue"]),
        duke_row(schema, str(video), "test", ["pose_lateral", "motion_walking", "top_black", "bottom_black"]),
    ]
    manifest = tmp_path / "own.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_dataset(manifest, schema="duke")
    assert [len(t.frame_files) for t in data.train] == [3] and data.test[0].video == video
    clips = ClipDataset(data.train + data.test, Preprocess(32, (0.5,) * 3, (0.5,) * 3), 4, "segment_middle")
    frames, labels, _ = clips[(0, 1)]
    assert frames.shape == (4, 3, 32, 32) and labels.sum() == 4


def test_manifest_problems_name_file_and_line(tmp_path):
    schema = load_schema("duke")
    write_frame(tmp_path / "ok" / "0.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.mp4").write_text("not a video")
    good = ["pose_back", "motion_running", "top_red", "bottom_blue"]
    rows = [
        duke_row(schema, "ok", "train", good),
        duke_row(schema, "ok", "validation", good),
        duke_row(schema, "ok", "train", good[1:]),
        duke_row(schema, "empty", "train", good),
        duke_row(schema, "fake.mp4", "test", good),
        duke_row(schema, "missing.mp4", "test", good),
        {k: v for k, v in duke_row(schema, "ok", "test", good).items() if k != "hat"},
        {**duke_row(schema, "ok", "test", good), "female": "yes"},
    ]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), restval=None)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DatasetError) as info:
        load_manifest(manifest, schema)
    message = str(info.value)
    assert f"{manifest}:3: split is 'validation'" in message
    assert f"{manifest}:4: one-of group 'pose' needs exactly one 1" in message
    assert f"{manifest}:5: frame folder {tmp_path / 'empty'} has no .jpg/.jpeg/.png files" in message
    assert f"{manifest}:6: video {tmp_path / 'fake.mp4'} cannot be opened as a video" in message
    assert f"{manifest}:7: {tmp_path / 'missing.mp4'} does not exist" in message
    assert f"{manifest}:8: attribute 'hat' is ''" in message or f"{manifest}:8: missing attribute" in message
    assert f"{manifest}:9: attribute 'female' is 'yes', expected 0 or 1" in message


def test_broken_json_line_and_unknown_schema(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "x"\n')
    with pytest.raises(DatasetError, match=r"m.jsonl:1: not valid JSON"):
        load_dataset(manifest)
    with pytest.raises(DatasetError, match="unknown attribute schema 'nope'"):
        load_dataset(manifest, schema="nope")
    with pytest.raises(DatasetError, match="--schema applies to manifests only"):
        load_dataset(tmp_path, data_format="mars", schema="duke")


def test_the_same_clip_twice_is_refused_naming_both_lines(tmp_path):
    schema = load_schema("duke")
    good = ["pose_back", "motion_running", "top_red", "bottom_blue"]
    for name in ("a", "b"):
        write_frame(tmp_path / name / "0.jpg")
    rows = [
        duke_row(schema, "a", "train", good),
        duke_row(schema, "./a", "train", good),  # the same folder, spelled differently
        duke_row(schema, "b", "train", good),
        duke_row(schema, str(tmp_path / "b"), "test", good),  # the same folder in the other split
    ]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DatasetError) as info:
        load_manifest(manifest, schema)
    message = str(info.value)
    assert "2 problem(s)" in message
    assert f"{manifest}:3: {tmp_path / './a'} is the clip already listed at {manifest}:2" in message
    assert f"{manifest}:5: {tmp_path / 'b'} is the clip already listed at {manifest}:4" in message


def test_identity_column_groups_tracklets_else_each_row_is_its_own(tmp_path):
    schema = load_schema("duke")
    good = ["pose_back", "motion_running", "top_red", "bottom_blue"]
    for name in ("a", "b", "c"):
        write_frame(tmp_path / name / "0.jpg")
    with_identity = [
        {**duke_row(schema, "a", "train", good), "identity": "anna"},
        {**duke_row(schema, "b", "train", good), "identity": "anna"},
        {**duke_row(schema, "c", "test", good), "identity": "carl"},
    ]
    manifest = tmp_path / "with.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in with_identity) + "\n")
    data = load_manifest(manifest, schema)
    assert [t.identity for t in data.train] == ["anna", "anna"] and data.test[0].identity == "carl"

    without = tmp_path / "without.jsonl"
    without.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "identity"}) for r in with_identity))
    assert [t.identity for t in load_manifest(without, schema).train] == ["a", "b"]

    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({**with_identity[0], "identity": " "}) + "\n")
    with pytest.raises(DatasetError, match=r"empty.jsonl:1: empty 'identity'"):
        load_manifest(empty, schema)
