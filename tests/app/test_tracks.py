"""/predict/tracks against a real server: each track's answer is /predict's answer on that track's crops, track
ids, frame ranges and skipped tracks follow the tracks sent, all tracks share one decode pass, and a bad tracks
file gets a 4xx naming its line."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import math
import tracemalloc

import httpx
import numpy as np
import pytest

import app.decoding.video as video_module
from app.api.schemas import TracksResponse
from app.decoding import Deadline, DecodeLimits, decode_video
from app.errors import ErrorCode, ServiceError
from app.settings import Settings
from app.tracks import TrackLimits, TrackPipeline, parse_tracks
from benchmarks.media import decode_all, encode, frames, image_bytes
from model import sample_frame_indices
from training.synthetic.scenes import make_scene, write_mot

from .conftest import E2E_LIMITS
from .harness import make_settings, serving

TOLERANCE = 1e-5
SIZE = (96, 160)  # height, width


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small scene: its video, its ground-truth MOT text and the boxes by track."""
    made = make_scene(seed=11, walkers=4, num_frames=30, size=SIZE)
    folder = tmp_path_factory.mktemp("scene")
    video = encode("mp4", made.frames)
    write_mot(made.boxes, folder / "gt.txt")
    tracks = {}
    for box in made.boxes:
        tracks.setdefault(box.track_id, []).append(box)
    return {"video": video, "mot": (folder / "gt.txt").read_bytes(), "tracks": tracks, "frames": decode_all(video)}


def post_tracks(url: str, video: bytes, tracks: bytes, name: str = "gt.txt", **params) -> httpx.Response:
    files = {"video": ("scene.mp4", video), "tracks": (name, tracks)}
    return httpx.post(f"{url}/predict/tracks", files=files, params=params, timeout=60)


def expected_region(box, margin: float, width: int, height: int) -> list[int]:
    """The documented crop: the box grown by ``margin`` of its size on each side, clipped, in whole pixels."""
    left = max(0, math.floor(box.left - margin * box.width))
    top = max(0, math.floor(box.top - margin * box.height))
    right = min(width, math.ceil(box.left + (1 + margin) * box.width))
    bottom = min(height, math.ceil(box.top + (1 + margin) * box.height))
    return [left, top, right - left, bottom - top]


def test_each_track_is_answered_as_predict_answers_its_crops(server, scene):
    response = post_tracks(server.url, scene["video"], scene["mot"], margin=0.1)
    assert response.status_code == 200, response.text
    answer = TracksResponse.model_validate(response.json())
    height, width = SIZE
    assert (answer.input.width, answer.input.height, answer.input.total_frames) == (width, height, 30)
    assert answer.input.tracks_source == "mot" and answer.input.boxes == sum(map(len, scene["tracks"].values()))
    assert [track.track_id for track in answer.tracks] == sorted(scene["tracks"]) and answer.skipped == []
    frames_per_clip = server.service.backend.description.frames_per_clip
    for track in answer.tracks:
        truth = scene["tracks"][track.track_id]
        assert (track.first_frame, track.last_frame, track.boxes) == (
            truth[0].frame + 1,
            truth[-1].frame + 1,
            len(truth),
        )
        used = [truth[i] for i in sample_frame_indices(len(truth), frames_per_clip, "segment_middle")]
        assert track.frames_used == [box.frame + 1 for box in used]
        assert track.boxes_used == [expected_region(box, 0.1, width, height) for box in used]
        assert track.track_boxes is None  # the client sent them
        # The same crops, cut by the client and sent to /predict as a tracklet, get the same answer.
        crops = [
            scene["frames"][frame - 1][top : top + h, left : left + w]
            for frame, (left, top, w, h) in zip(track.frames_used, track.boxes_used, strict=True)
        ]
        files = [("frames", (f"{i}.png", image_bytes(crop, "PNG"))) for i, crop in enumerate(crops)]
        direct = httpx.post(f"{server.url}/predict", files=files, timeout=60).json()
        np.testing.assert_allclose(
            [a.probability for a in track.attributes],
            [a["probability"] for a in direct["attributes"]],
            atol=TOLERANCE,
            rtol=0,
        )
        assert [g.winner for g in track.groups] == [g["winner"] for g in direct["groups"]]


def test_json_tracks_get_the_same_answer_as_mot_text(server, scene):
    rows = [line.split(",") for line in scene["mot"].decode().splitlines()]
    as_json = [{"frame": int(r[0]), "id": int(r[1]), "box": [float(v) for v in r[2:6]], "score": 1} for r in rows]
    mot = post_tracks(server.url, scene["video"], scene["mot"]).json()
    from_json = post_tracks(server.url, scene["video"], json.dumps(as_json, indent=2).encode(), "gt.json").json()
    assert from_json["input"]["tracks_source"] == "json"
    for a, b in zip(mot["tracks"], from_json["tracks"], strict=True):
        assert (a["track_id"], a["frames_used"], a["boxes_used"]) == (b["track_id"], b["frames_used"], b["boxes_used"])
        np.testing.assert_allclose(
            [x["probability"] for x in a["attributes"]], [x["probability"] for x in b["attributes"]], atol=TOLERANCE
        )


def test_tracks_with_fewer_boxes_than_min_frames_are_listed_as_skipped(tiny_checkpoint, scene):
    """With VTFPAR_MIN_FRAMES = 8, track 1 cut to 5 boxes (and any shorter track) is skipped, saying why; the
    others are answered as usual."""
    lines = scene["mot"].decode().splitlines()
    first = [line for line in lines if line.split(",")[1] == "1"]
    kept = [line for line in lines if line.split(",")[1] != "1"] + first[:5]
    truth = {**scene["tracks"], 1: scene["tracks"][1][:5]}
    short = sorted(track_id for track_id, boxes in truth.items() if len(boxes) < 8)
    assert 1 in short and len(short) < len(truth)
    with serving(make_settings(tiny_checkpoint, **E2E_LIMITS, min_frames=8)) as running:
        response = post_tracks(running.url, scene["video"], "\n".join(kept).encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [track["track_id"] for track in answer["tracks"]] == sorted(set(truth) - set(short))
    assert answer["skipped"] == [
        {
            "track_id": track_id,
            "first_frame": truth[track_id][0].frame + 1,
            "last_frame": truth[track_id][-1].frame + 1,
            "boxes": len(truth[track_id]),
            "reason": f"{len(truth[track_id])} box(es); at least 8 needed (VTFPAR_MIN_FRAMES)",
        }
        for track_id in short
    ]


GOOD = "1,1,10,10,20,40\n2,1,12,10,20,40\n"
# name: (tracks file, status, error code, text the message must contain)
BAD_TRACKS = {
    "negative width": (GOOD + "3,1,14,10,-20,40\n", 422, "bad_tracks", "line 3"),
    "zero height": (GOOD + "3,1,14,10,20,0\n", 422, "bad_tracks", "line 3"),
    "frame past the video": (GOOD + "31,1,14,10,20,40\n", 422, "bad_tracks", "line 3: frame 31 is past"),
    "frame 0": ("0,1,10,10,20,40\n", 422, "bad_tracks", "line 1"),
    "box outside the frame": (GOOD + "\n3,1,500,10,20,40\n", 422, "bad_tracks", "line 4"),
    "garbage line": (GOOD + "walker one went left\n", 422, "bad_tracks", "line 3"),
    "a word for a number": (GOOD + "3,1,ten,10,20,40\n", 422, "bad_tracks", "line 3: left must be a number"),
    "fractional frame": ("1.5,1,10,10,20,40\n", 422, "bad_tracks", "line 1"),
    "two boxes of a track in one frame": (GOOD + "2,1,30,10,20,40\n", 422, "bad_tracks", "line 3"),
    "untracked detections (id -1)": ("1,-1,10,10,20,40\n", 422, "bad_tracks", "line 1"),
    "binary": ("\x00\xff\xfe garbage", 422, "bad_tracks", "line 1"),
    "only blank lines": ("\n \n", 422, "bad_tracks", "no boxes"),
    "invalid JSON": ('[{"frame": 1, "id": 1, "box": [1, 2, 3, 4]},', 422, "bad_tracks", "not valid JSON (parse error"),
    "JSON box nested": ('[{"frame": 1, "id": 1, "box": [1, [2], 3, 4]}]', 422, "bad_tracks", "item 0: top must be"),
    "JSON item not an object": ('[{"frame": 1, "id": 1, "box": [1, 2, 3, 4]}, 7]', 422, "bad_tracks", "item 1"),
    "JSON item without a box": ('[{"frame": 1, "id": 1}]', 422, "bad_tracks", "item 0"),
    "JSON box of three numbers": ('[{"frame": 1, "id": 1, "box": [1, 2, 3]}]', 422, "bad_tracks", "item 0"),
    "more tracks than VTFPAR_MAX_TRACKS": (
        "".join(f"1,{i},10,10,20,40\n" for i in range(1, 66)),
        413,
        "payload_too_large",
        "line 65: track 65",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACKS))
def test_a_bad_tracks_file_gets_a_4xx_naming_its_line(server, scene, case):
    tracks, status, code, text = BAD_TRACKS[case]
    response = post_tracks(server.url, scene["video"], tracks.encode("latin-1"))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and text in error["message"], error


@pytest.mark.parametrize(
    "request_kwargs, status",
    [
        ({"files": {"video": ("s.mp4", b"x")}}, 400),  # no tracks
        ({"files": {"tracks": ("gt.txt", GOOD.encode())}}, 400),  # no video
        ({"files": [("video", ("s.mp4", b"x")), ("tracks", ("a", b"1")), ("tracks", ("b", b"1"))]}, 400),
        ({"files": {"video": ("s.mp4", b"x"), "frames": ("0.png", b"x"), "tracks": ("gt", b"1")}}, 400),
        ({"content": b"\0\0\0\x18ftypmp42", "headers": {"Content-Type": "video/mp4"}}, 415),  # raw: tracks missing
    ],
)
def test_the_form_needs_one_video_and_one_tracks_file(server, request_kwargs, status):
    response = httpx.post(f"{server.url}/predict/tracks", timeout=30, **request_kwargs)
    assert response.status_code == status, response.text
    assert "'tracks'" in response.json()["error"]["message"]


def test_a_margin_outside_0_to_1_is_refused(server, scene):
    response = post_tracks(server.url, scene["video"], GOOD.encode(), margin=1.5)
    assert response.status_code == 400 and "margin" in response.json()["error"]["message"]


def test_only_the_frames_the_tracks_need_are_decoded(server):
    """300 frames with a keyframe every 20: tracks in frames 201-260 decode a few GOPs, not the video."""
    video = encode("mp4", frames(300, width=64, height=64), fps=25, gop=20)
    mot = "".join(f"{f},{t},{4 * t},8,24,48\n" for t in (1, 2) for f in range(201 + 10 * t, 241 + 10 * t))
    response = post_tracks(server.url, video, mot.encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    needed = {frame for track in answer["tracks"] for frame in track["frames_used"]}
    assert len(answer["tracks"]) == 2 and all(201 <= frame <= 260 for frame in needed)
    assert len(needed) <= answer["input"]["frames_decoded"] <= 60, answer["input"]
    assert answer["input"]["total_frames"] == 300


def test_all_tracks_share_one_decode_pass(monkeypatch, scene):
    """FFmpeg opens the video twice: once to index it (demux only), once to decode every track's frames."""
    opened = []
    real_open = video_module._open
    monkeypatch.setattr(
        video_module, "_open", lambda *args, **kwargs: opened.append(args) or real_open(*args, **kwargs)
    )
    settings = Settings(**E2E_LIMITS)
    pipeline = TrackPipeline(
        frames_per_clip=6,
        limits=DecodeLimits.from_settings(settings),
        track_limits=TrackLimits.from_settings(settings),
        square_frame=lambda crop: crop,
        prepare=lambda crops: crops,
    )
    prepared = pipeline.read_tracks(io.BytesIO(scene["video"]), io.BytesIO(scene["mot"]), 0.0, Deadline(30))
    assert len(prepared.tracks) == len(scene["tracks"]) >= 3
    assert len(opened) == 2
    wanted = {box.frame for track in prepared.tracks for box in track.plan.used}
    assert prepared.frames_decoded <= max(wanted) + 1
    for track in prepared.tracks:  # what prepare got: the crops, of the documented sizes
        assert [crop.shape[:2] for crop in track.model_input] == [
            (r.bottom - r.top, r.right - r.left) for r in track.plan.regions
        ]


def large_frames_tracks() -> tuple[bytes, bytes]:
    """Frames larger than the model's input, with tracks over most of them: crops that are scaled down."""
    video = encode("mp4", frames(8, width=640, height=480))
    mot = "".join(f"{f},{t},{9 * t},{5 * t},{600 - 40 * t},{300 + 30 * t}\n" for t in (1, 2, 3) for f in range(1, 9))
    return video, mot.encode()


@pytest.mark.parametrize("which", ["scene", "large frames"])
def test_crops_shrunk_as_they_are_cut_get_the_probabilities_full_size_crops_get(runner, scene, which):
    """Each crop is made the model's input size as soon as it is cut; the answer is that of preparing the
    full-size crops afterwards (the way tracks were read before), to the last bit on CPU."""
    video, mot = (scene["video"], scene["mot"]) if which == "scene" else large_frames_tracks()
    settings = Settings()
    shrinking, full_size = (
        TrackPipeline(
            runner.frames_per_clip,
            DecodeLimits.from_settings(settings),
            TrackLimits.from_settings(settings),
            square_frame,
            runner.prepare,
        )
        for square_frame in (runner.description.preprocess.square_frame, lambda crop: crop.copy())
    )
    got, expected = (
        pipeline.read_tracks(io.BytesIO(video), io.BytesIO(mot), 0.1, Deadline(60))
        for pipeline in (shrinking, full_size)
    )
    assert len(got.tracks) == len(expected.tracks) >= 3
    small = runner.description.image_size
    assert all(crop.shape == (small, small, 3) for crop in shrinking_crops(shrinking, video, mot))
    np.testing.assert_array_equal(
        runner.predict([track.model_input for track in got.tracks]),
        runner.predict([track.model_input for track in expected.tracks]),
    )


def shrinking_crops(pipeline: TrackPipeline, video: bytes, mot: bytes) -> list[np.ndarray]:
    """The crops ``pipeline`` hands to ``prepare``."""
    handed: list[np.ndarray] = []
    recording = dataclasses.replace(pipeline, prepare=lambda crops: handed.extend(crops))
    recording.read_tracks(io.BytesIO(video), io.BytesIO(mot), 0.1, Deadline(60))
    return handed


def test_a_long_recording_with_tracks_over_two_seconds_is_answered_under_the_default_limits(runner):
    """Three minutes of low-resolution video, tracks over 2 s of it: the frames decoded, not the recording's
    length, bound what /predict/tracks costs, so the default limits answer it; /predict, which spreads one clip
    over the whole video, still refuses it as too long."""
    fps, minutes = 10, 3
    video = encode("mp4", frames(fps * 60 * minutes, width=32, height=32), fps=fps)
    first = 1000  # 1-based MOT frame numbers: 1000 to 1019, two seconds
    mot = "".join(f"{f},{t},{8 * t},4,12,24\n" for t in (1, 2) for f in range(first, first + 2 * fps)).encode()
    limits = DecodeLimits.from_settings(Settings())
    pipeline = TrackPipeline(
        runner.frames_per_clip,
        limits,
        TrackLimits.from_settings(Settings()),
        runner.description.preprocess.square_frame,
        runner.prepare,
    )
    prepared = pipeline.read_tracks(io.BytesIO(video), io.BytesIO(mot), 0.0, Deadline(limits.decode_timeout_s))
    assert prepared.index.duration_s == pytest.approx(60.0 * minutes, abs=1)
    assert prepared.index.duration_s > limits.max_duration_s
    assert [track.plan.track_id for track in prepared.tracks] == [1, 2]
    assert prepared.frames_decoded <= limits.max_frames_decoded
    with pytest.raises(ServiceError) as too_long:
        decode_video(io.BytesIO(video), runner.frames_per_clip, limits, Deadline(limits.decode_timeout_s))
    assert too_long.value.code == ErrorCode.CLIP_TOO_LONG


def test_the_box_limit_and_the_size_of_the_tracks_part_are_checked_while_reading():
    limits = TrackLimits(max_tracks=4, max_track_boxes=3)
    with pytest.raises(ServiceError) as too_many:
        parse_tracks(io.BytesIO(b"1,1,1,1,5,5\n2,1,1,1,5,5\n3,1,1,1,5,5\n4,1,1,1,5,5\n"), limits)
    assert too_many.value.code == ErrorCode.PAYLOAD_TOO_LARGE and "line 4" in too_many.value.message
    with pytest.raises(ServiceError) as too_big:
        parse_tracks(io.BytesIO(b" " * 10_000), limits)
    assert too_big.value.code == ErrorCode.PAYLOAD_TOO_LARGE and "tracks part" in too_big.value.message


EMPTY_OBJECTS = b"[" + b"{}," * 8_000_000 + b"{}]"  # 24 MB: json.loads would make 8 million dicts of it
ONE_ITEM_WITH_A_HUGE_EXTRA_KEY = (
    b'[{"frame": 1, "id": 1, "box": [1, 2, 3, 4], "notes": [' + b"{}," * 4_000_000 + b"{}]}]"
)


@pytest.mark.parametrize(
    ("document", "refused"),
    [
        pytest.param(EMPTY_OBJECTS, "item 0", id="refused"),
        # 8 million parser events, each traced by tracemalloc: about 30 s.
        pytest.param(ONE_ITEM_WITH_A_HUGE_EXTRA_KEY, None, id="kept", marks=pytest.mark.slow),
    ],
)
def test_json_tracks_are_read_one_item_at_a_time(document, refused):
    """A JSON document is checked item by item as it is parsed: refused at its first bad item, and the values of
    keys the service ignores are never built, so neither costs memory in proportion to its size."""
    limits = TrackLimits(max_tracks=64, max_track_boxes=100_000)
    file = io.BytesIO(document)
    tracemalloc.start()
    try:
        if refused is None:
            assert parse_tracks(file, limits).box_count == 1
        else:
            with pytest.raises(ServiceError) as error:
                parse_tracks(file, limits)
            assert error.value.code == ErrorCode.BAD_TRACKS and refused in error.value.message
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024 * 1024, f"{peak / 2**20:.0f} MiB for a {len(document) / 2**20:.0f} MiB document"


def test_scene_is_404_detection_off_when_the_detector_is_off_and_info_says_so(tiny_checkpoint, scene):
    with serving(make_settings(tiny_checkpoint, **E2E_LIMITS, detector="off")) as running:
        response = httpx.post(f"{running.url}/predict/scene", files={"video": ("s.mp4", scene["video"])}, timeout=30)
        info = httpx.get(f"{running.url}/info").json()
    assert response.status_code == 404 and response.json()["error"]["code"] == "detection_off"
    assert info["scene"] == {
        "enabled": False,
        "detector": None,
        "detector_weights": None,
        "detection_interval": 1,
        "tracker": None,
    }


def test_hog_detection_is_on_by_default_and_info_says_so(server, scene):
    pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")
    response = httpx.post(f"{server.url}/predict/scene", files={"video": ("s.mp4", scene["video"])}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["input"]["tracks_source"] == "detector"
    info = httpx.get(f"{server.url}/info").json()
    assert info["scene"]["enabled"] and info["scene"]["detector"] == "hog"
    assert info["scene"]["tracker"].startswith("bytetrack")
    assert info["limits"]["max_tracks"] == 64 and info["limits"]["max_track_boxes"] == 100_000
    spec = httpx.get(f"{server.url}/openapi.json").json()
    tracks_form = spec["paths"]["/predict/tracks"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert tracks_form["required"] == ["video", "tracks"] and tracks_form["additionalProperties"] is False
    assert "404" in spec["paths"]["/predict/scene"]["post"]["responses"]


def test_concurrent_requests_with_more_tracks_than_the_queue_holds_are_all_answered(tiny_checkpoint, scene):
    """Three requests of 24 tracks each against a queue of 8 clips: every track waits for room instead of the
    second and third requests getting 429, and each request gets the answer it gets alone."""
    height, width = SIZE
    boxes = [f"{f},{t},{t},{t},{width - 24},{height - 24}\n" for t in range(1, 25) for f in range(1, 31)]
    mot = "".join(boxes).encode()
    with serving(make_settings(tiny_checkpoint, **{**E2E_LIMITS, "max_queue": 8, "max_batch_clips": 4})) as running:
        alone = post_tracks(running.url, scene["video"], mot)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: post_tracks(running.url, scene["video"], mot), range(3)))
        assert running.app.state.service.settings.max_tracks > 8
    assert alone.status_code == 200, alone.text
    assert [answer.status_code for answer in answers] == [200] * 3, [answer.text[:300] for answer in answers]
    expected = [[a["probability"] for a in track["attributes"]] for track in alone.json()["tracks"]]
    for answer in answers:
        got = [[a["probability"] for a in track["attributes"]] for track in answer.json()["tracks"]]
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
