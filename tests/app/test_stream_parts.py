"""The parts of a live stream that need no server: which URLs may be opened and how FFmpeg is told to open them,
a track's fused attributes, its thumbnail and its bounded rings, and the streams file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.errors import ErrorCode, ServiceError
from app.inference import StartupError
from app.streams.manager import read_streams_file
from app.streams.sources import check_source
from app.streams.tracks import MAX_BOXES, LiveTrack, Seen, cut, model_squares
from model import Preprocess

pytest.importorskip("cv2", reason="the 'scene' extra (OpenCV) is not installed")

PREPROCESS = Preprocess(image_size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), padding="centre")
ALLOWED = ("rtsp://cam.local:554/live/", "https://video.example.com/hls/", "rtmp://10.0.0.2/app/")


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam.local:554/live/1",
        "RTSP://CAM.local:554/live/1",  # scheme and host compare case-insensitively
        "https://video.example.com/hls/gate.m3u8",
        "rtmp://10.0.0.2/app/stream",
    ],
)
def test_urls_under_a_prefix_are_accepted(url):
    assert check_source(url, ALLOWED).shown == url


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam.local:554/other/1",
        "rtsp://cam.local:5540/live/1",
        "rtsp://cam.local.evil.com:554/live/1",
        "rtsp://user@cam.local:554/live/1",
        "rtsp://cam.local:554/live/../admin",
        "rtsp://cam.local:554/live/%2E%2E/admin",
        "http://video.example.com/hls/gate.m3u8",  # https only
        "https://video.example.com/hlsx/gate.m3u8",
        "file:///etc/passwd",
        "concat:a.ts|b.ts",
        "subfile,,start,0,end,0,,:/etc/passwd",
        "data:video/mp4;base64,AAAA",
        "",
    ],
)
def test_anything_else_is_refused_before_any_connection(url):
    with pytest.raises(ServiceError) as refused:
        check_source(url, ALLOWED)
    assert refused.value.code == ErrorCode.SOURCE_NOT_ALLOWED


def test_network_sources_may_open_only_what_their_scheme_needs():
    for url in ("rtsp://cam.local:554/live/1", "https://video.example.com/hls/a.m3u8", "rtmp://10.0.0.2/app/s"):
        options = check_source(url, ALLOWED).options
        allowed = set(options["protocol_whitelist"].split(","))
        assert not allowed & {"file", "concat", "subfile", "data", "pipe"}, url
    rtsp = check_source("rtsp://cam.local:554/live/1", ALLOWED).options
    assert rtsp["rtsp_transport"] == "tcp"
    assert check_source("rtsp://cam.local:554/live/1", ALLOWED, rtsp_transport="udp").options["rtsp_transport"] == "udp"
    assert check_source("https://video.example.com/hls/a.m3u8", ALLOWED).options["max_redirects"] == "0"


def test_files_must_resolve_inside_an_allowed_directory(tmp_path):
    recordings, elsewhere = tmp_path / "recordings", tmp_path / "elsewhere"
    recordings.mkdir()
    elsewhere.mkdir()
    (recordings / "a.mp4").write_bytes(b"x")
    (elsewhere / "b.mp4").write_bytes(b"x")
    (recordings / "link.mp4").symlink_to(elsewhere / "b.mp4")
    allowed = (f"file://{recordings}/",)
    source = check_source((recordings / "a.mp4").as_uri(), allowed)
    assert source.is_file and source.target == str(recordings / "a.mp4")
    assert source.options["protocol_whitelist"] == "file" and "hls" not in source.options["format_whitelist"]
    for url in [
        (elsewhere / "b.mp4").as_uri(),
        (recordings / "link.mp4").as_uri(),
        f"file://{recordings}/../elsewhere/b.mp4",
    ]:
        with pytest.raises(ServiceError) as refused:
            check_source(url, allowed)
        assert refused.value.code == ErrorCode.SOURCE_NOT_ALLOWED, url
    with pytest.raises(ServiceError) as missing:
        check_source((recordings / "none.mp4").as_uri(), allowed)
    assert missing.value.code == ErrorCode.NOT_FOUND


def _seen(t: float) -> Seen:
    from datetime import UTC, datetime

    return Seen(t, datetime.now(UTC))


def _add(track: LiveTrack, seen: Seen, box: np.ndarray, frame: np.ndarray, square) -> None:
    track.record(seen, box, cut(frame, box, square, track.thumbnail_rank))


def test_attributes_are_the_mean_of_the_windows_logits():
    track = LiveTrack(1, _seen(0), ring=8)
    assert track.probabilities is None
    windows = [np.array([0.9, 0.2, 0.5]), np.array([0.6, 0.4, 0.5]), np.array([0.99, 0.1, 0.5])]
    for window in windows:
        track.fuse(window)
    logits = np.log(np.stack(windows) / (1 - np.stack(windows)))
    expected = 1 / (1 + np.exp(-logits.mean(axis=0)))
    assert track.windows == 3
    np.testing.assert_allclose(track.probabilities, expected, rtol=1e-5)
    # One odd window moves a settled answer by a third of its logit, not all the way.
    assert track.probabilities[0] > 0.85


def test_the_appearance_embedding_is_the_windows_mean_direction():
    track = LiveTrack(1, _seen(0), ring=8)
    assert track.embedding is None
    windows = [np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.6, 0.8, 0.0])]
    for window in windows:
        track.fuse(np.array([0.5]), window)
    mean = np.mean(windows, axis=0)
    np.testing.assert_allclose(track.embedding, mean / np.linalg.norm(mean), rtol=1e-6)
    np.testing.assert_allclose(track.ended("s", "gate").embedding, track.embedding)


def test_the_clip_image_embedding_is_fused_the_same_way_and_ends_with_the_track():
    track = LiveTrack(1, _seen(0), ring=8)
    windows = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.6, 0.8])]
    for window in windows:
        track.fuse(np.array([0.5]), None, window)
    mean = np.mean(windows, axis=0)
    assert track.embedding is None  # a runner may give one without the other
    np.testing.assert_allclose(track.ended("s", "gate").image_embedding, mean / np.linalg.norm(mean), rtol=1e-6)


def test_the_thumbnail_is_the_largest_box_not_cut_by_the_frame_edge_and_rings_are_bounded():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :, 0] = np.arange(640, dtype=np.uint8)[None, :] // 3  # a box's crop says where it was cut
    track = LiveTrack(1, _seen(0), ring=4)
    square = model_squares(PREPROCESS)
    _add(track, _seen(0.1), np.array([100, 100, 150, 200]), frame, square)  # small, whole
    _add(track, _seen(0.2), np.array([0, 0, 300, 479]), frame, square)  # large, cut by the edge
    assert track.thumbnail is not None and track.thumbnail.shape == (100, 50, 3)
    _add(track, _seen(0.3), np.array([200, 40, 420, 440]), frame, square)  # larger still, whole
    assert track.thumbnail.shape == (256, 141, 3)  # full resolution, longest side capped at 256
    assert track.thumbnail[0, 0, 0] == frame[40, 200, 0]
    for i in range(MAX_BOXES + 10):
        _add(track, _seen(1 + i), np.array([10, 10, 60, 110]), frame, square)
    assert len(track.crops) == 4 and all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in track.crops)
    assert len(track.boxes) == MAX_BOXES and track.boxes[-1][0] == 1 + MAX_BOXES + 9
    assert track.first_seen.stream_s == 0 and track.last_seen.stream_s == 1 + MAX_BOXES + 9
    assert len(track.clip_frames(6)) == 6


def test_the_streams_file_is_read_strictly(tmp_path):
    good = tmp_path / "streams.json"
    good.write_text(json.dumps([{"name": "gate-3", "url": "rtsp://cam.local:554/live/1", "update_s": 5}]))
    [spec] = read_streams_file(good)
    assert spec.name == "gate-3" and spec.update_s == 5 and spec.rtsp_transport == "tcp"
    for text in ["{", json.dumps([{"name": "x"}]), json.dumps([{"name": "x", "url": "rtsp://a/", "colour": 1}])]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(StartupError, match="VTFPAR_STREAMS_FILE"):
            read_streams_file(bad)


@pytest.mark.parametrize("padding", ["centre", "stretch"])
def test_crops_kept_as_model_input_give_the_model_what_the_original_crops_would(padding):
    preprocess = Preprocess(image_size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), padding=padding)
    square = model_squares(preprocess)
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(300, 120), (40, 17), (64, 64), (90, 200)]]
    kept = [square(crop) for crop in crops]
    assert all(k.shape == (64, 64, 3) and k.dtype == np.uint8 for k in kept)
    np.testing.assert_allclose(preprocess(kept).numpy(), preprocess(crops).numpy(), atol=1e-5)


def test_the_frame_slot_keeps_only_the_newest_frame_and_counts_what_it_replaced():
    from app.streams.reader import Frame, FrameSlot

    slot = FrameSlot()
    frames = [Frame(float(i), 0.0, _seen(i).at, np.zeros((2, 2, 3), np.uint8)) for i in range(3)]
    assert slot.put(frames[0]) is False
    assert slot.put(frames[1]) is True and slot.put(frames[2]) is True  # processing fell behind: two dropped
    assert slot.take(0.01) is frames[2]
    assert slot.take(0.01) is None  # nothing queues up behind it
