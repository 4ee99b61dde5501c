"""Synthetic scenes: walkers enter, cross, hide each other and leave; the ground truth says where, and the files
are what /predict/tracks and the label readers take."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest

from model import load_schema
from training.data.mars import encode_labels
from training.synthetic.scenes import MIN_INSIDE, main, make_scene, walker_tracklet

SIZE = (96, 160)


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(seed, walkers=5, num_frames=40, size=SIZE) for seed in range(4)]


def test_the_same_seed_gives_the_same_scene():
    first, again, other = (make_scene(seed, walkers=3, num_frames=8, size=SIZE) for seed in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames, strict=True))
    assert first.boxes == again.boxes
    assert not np.array_equal(first.frames[0], other.frames[0])


def test_walkers_enter_and_leave_at_the_edges_and_hide_each_other(scenes):
    height, width = SIZE
    entered = left = hidden = 0
    for scene in scenes:
        assert len(scene.frames) == 40 and scene.frames[0].shape == (*SIZE, 3)
        for box in scene.boxes:
            inside = min(box.left + box.width, width) - max(box.left, 0)
            assert inside >= MIN_INSIDE * box.width and 0 <= box.visibility <= 1
            assert box.width == pytest.approx(box.height / 2)
        for walker in scene.walkers:
            track = scene.track(walker.track_id)
            if not track:
                continue
            assert [box.frame for box in track] == list(range(track[0].frame, track[-1].frame + 1))  # no gaps
            at_edge = [box.left < 0 or box.left + box.width > width for box in (track[0], track[-1])]
            entered += track[0].frame > 0 and at_edge[0]
            left += track[-1].frame < 39 and at_edge[1]
        hidden += sum(box.visibility < 0.5 for box in scene.boxes)
    assert entered >= 2 and left >= 2 and hidden >= 5, (entered, left, hidden)


def _overlap(a, b, at_least: float = 0.0) -> bool:
    """Whether boxes a and b share more than ``at_least`` pixels in both directions."""
    across = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    down = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    return across > at_least and down > at_least


def test_only_nearer_walkers_hide_a_walker(scenes):
    """Visibility below 1 only where the box of a walker nearer the camera (feet lower) overlaps it, and always
    where one overlaps it by 2 pixels or more (visibility is measured on whole pixels)."""
    for scene in scenes:
        feet = {walker.track_id: walker.feet for walker in scene.walkers}
        for box in scene.boxes:
            in_front = [
                other for other in scene.boxes if other.frame == box.frame and feet[other.track_id] > feet[box.track_id]
            ]
            if box.visibility < 1:
                assert any(_overlap(box, other) for other in in_front), box
            if any(_overlap(box, other, at_least=2) for other in in_front):
                assert box.visibility < 1, box


def test_a_walker_as_a_tracklet_has_one_frame_per_ground_truth_box(scenes):
    scene = scenes[0]
    track_id = scene.boxes[0].track_id
    frames = walker_tracklet(scene, track_id, (64, 32), seed=0)
    assert len(frames) == len(scene.track(track_id)) and frames[0].shape == (64, 32, 3)


def test_the_command_writes_video_mot_ground_truth_and_labels(tmp_path):
    assert main(["--out", str(tmp_path), "--scenes", "2", "--walkers", "3", "--frames", "12", "--size", "64x96"]) == 0
    settings = json.loads((tmp_path / "scenes.json").read_text())
    assert settings["scenes"] == 2 and settings["size"] == [64, 96]
    folder = tmp_path / "scene-0002"
    with av.open(str(folder / "scene.mp4")) as video:
        decoded = list(video.decode(video=0))
    assert len(decoded) == 12 and (decoded[0].height, decoded[0].width) == (64, 96)
    rows = [line.split(",") for line in (folder / "gt.txt").read_text().splitlines()]
    assert rows and all(len(row) == 9 and 1 <= int(row[0]) <= 12 for row in rows)
    scene = make_scene(1, 3, 12, (64, 96))  # scene-0002 is seed 0 + 1
    assert [(int(r[0]) - 1, int(r[1])) for r in rows] == [(b.frame, b.track_id) for b in scene.boxes]
    with open(folder / "labels.csv") as handle:
        labels = list(csv.DictReader(handle))
    schema = load_schema("mars")
    assert {int(row["track_id"]) for row in labels} == {int(r[1]) for r in rows}
    for row in labels:
        walker = next(w for w in scene.walkers if w.track_id == int(row["track_id"]))
        assert [int(row[name]) for name in schema.names] == encode_labels(walker.raw, schema).tolist()
