"""vtfpar annotate: offline (the serving pipeline in-process) and --url (a running service) give the same JSON
lines, and the annotated video is the whole video with each track's box drawn on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.annotate import main
from benchmarks.media import decode_all, encode
from training.synthetic.scenes import make_scene, write_mot


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    made = make_scene(seed=3, walkers=3, num_frames=24, size=(96, 160))
    folder = tmp_path_factory.mktemp("annotate")
    (folder / "scene.mp4").write_bytes(encode("mp4", made.frames, fps=25))
    write_mot(made.boxes, folder / "gt.txt")
    return folder, made


@pytest.fixture
def offline_env(monkeypatch, tiny_checkpoint):
    for name, value in {"CHECKPOINT": str(tiny_checkpoint), "DEVICE": "cpu", "DECODE_WORKERS": "1"}.items():
        monkeypatch.setenv(f"VTFPAR_{name}", value)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offline_writes_one_line_per_track_and_the_video_with_the_boxes(offline_env, scene_files, tmp_path, capsys):
    folder, made = scene_files
    out, lines = tmp_path / "annotated.mp4", tmp_path / "tracks.jsonl"
    arguments = [str(folder / "scene.mp4"), "--tracks", str(folder / "gt.txt"), "--top", "1"]
    status = main([*arguments, "--out", str(out), "--json", str(lines)])
    assert status == 0, capsys.readouterr().err
    tracks = read_jsonl(lines)
    assert [track["track_id"] for track in tracks] == sorted({box.track_id for box in made.boxes})
    assert all(len(track["attributes"]) == 43 and track["frames_used"] for track in tracks)

    source, annotated = decode_all((folder / "scene.mp4").read_bytes()), decode_all(out.read_bytes())
    assert len(annotated) == len(source) == 24 and annotated[0].shape == source[0].shape
    # Each box's top edge is drawn over the picture (2 pixels wide, so it survives H.264's chroma subsampling in
    # brightness at least); the rest of the picture is kept.
    for box in made.boxes[::5]:
        row, columns = round(box.top) + 1, slice(max(0, int(box.left) + 2), int(box.left + box.width) - 2)
        drawn = annotated[box.frame][row, columns].astype(float) - source[box.frame][row, columns]
        assert np.abs(drawn).mean() > 25, box
    for kept, before in zip(annotated, source, strict=True):  # boxes and captions cover less than half of it
        assert np.median(np.abs(kept.astype(float) - before)) <= 6  # a second H.264 encode loses a little


def test_url_gives_the_same_answer_as_offline(offline_env, server, scene_files, tmp_path):
    folder, _ = scene_files
    answers = []
    for mode in ([], ["--url", server.url]):
        lines = tmp_path / f"tracks{len(mode)}.jsonl"
        arguments = [str(folder / "scene.mp4"), "--tracks", str(folder / "gt.txt"), "--margin", "0.1"]
        assert main([*arguments, "--out", str(tmp_path / "a.mp4"), "--json", str(lines), *mode]) == 0
        answers.append(read_jsonl(lines))
    offline, remote = answers
    for a, b in zip(offline, remote, strict=True):
        assert (a["track_id"], a["frames_used"], a["boxes_used"]) == (b["track_id"], b["frames_used"], b["boxes_used"])
        np.testing.assert_allclose(
            [x["probability"] for x in a["attributes"]], [x["probability"] for x in b["attributes"]], atol=1e-5
        )


@pytest.mark.parametrize("remote", [False, True])
def test_a_bad_tracks_file_exits_2_naming_the_line(offline_env, server, scene_files, tmp_path, capsys, remote):
    folder, _ = scene_files
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20,40\n2,1,10,10,oops,40\n")
    arguments = [str(folder / "scene.mp4"), "--tracks", str(bad), "--out", str(tmp_path / "a.mp4")]
    status = main([*arguments, "--json", str(tmp_path / "t.jsonl"), *(["--url", server.url] if remote else [])])
    assert status == 2
    error = capsys.readouterr().err
    assert "bad_tracks" in error and "line 2" in error
    assert not (tmp_path / "a.mp4").exists()


def test_without_tracks_it_needs_a_detector(offline_env, scene_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VTFPAR_DETECTOR", "off")
    folder, _ = scene_files
    status = main([str(folder / "scene.mp4"), "--out", str(tmp_path / "a.mp4"), "--json", str(tmp_path / "t.jsonl")])
    assert status == 2 and "VTFPAR_DETECTOR" in capsys.readouterr().err
