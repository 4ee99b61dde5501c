"""/predict/scene: the service's own detector and ByteTrack turn a video into tracks, answered as /predict/tracks
answers the same boxes. A stub detector that returns a synthetic scene's ground truth stands in for a trained
one (no weights can be downloaded here); a torchvision detector with random weights from a local file checks
the loading path."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
import torch

import app.decoding.video as video_module
from app.decoding import Deadline, DecodeLimits, FrameCounter, decode_frames, read_index
from app.errors import ErrorCode, ServiceError
from app.inference import StartupError
from app.settings import Settings
from app.tracks import SceneTracker, TorchvisionDetector
from benchmarks.media import decode_all, encode
from training.synthetic.scenes import make_scene

from .conftest import E2E_LIMITS
from .harness import make_settings, serving

pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")

INTERVAL = 2
MIN_VISIBILITY = 0.4  # the stub, like a real detector, misses people mostly hidden behind others


class GroundTruthDetector:
    """Returns the scene's ground-truth boxes of the frame it is shown, recognised by its position: the detection
    pass shows every ``interval``-th frame, in order. (By content it would be ambiguous: a video may hold two
    frames that decode to the same pixels, as an encoder is free to make a frame with no visible change.) Each
    frame shown is checked to hold the pixels decoded at that position."""

    name = "ground-truth stub"

    def __init__(self, decoded_frames: list[np.ndarray], boxes, interval: int) -> None:
        self.decoded_frames, self.boxes, self.interval = decoded_frames, boxes, interval
        self.shown: list[int] = []
        self.wrong_pixels: list[int] = []  # positions whose frame was not the one decoded there

    def detect(self, frames):
        found = []
        for frame in frames:
            index = len(self.shown) * self.interval
            self.shown.append(index)
            if not np.array_equal(frame, self.decoded_frames[index]):
                self.wrong_pixels.append(index)
            visible = [b for b in self.boxes if b.frame == index and b.visibility >= MIN_VISIBILITY]
            xyxy = np.array([[b.left, b.top, b.left + b.width, b.top + b.height] for b in visible]).reshape(-1, 4)
            found.append((xyxy, np.full(len(visible), 0.9)))
        return found


@pytest.fixture(scope="module")
def scene():
    made = make_scene(seed=5, walkers=4, num_frames=40, size=(96, 160))
    video = encode("mp4", made.frames, fps=25)
    return made, video, decode_all(video)


def _iou(a, b) -> float:
    """Boxes as [left, top, width, height]."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_scene_is_detected_tracked_and_answered_per_walker(tiny_checkpoint, scene):
    made, video, decoded = scene
    detector = GroundTruthDetector(decoded, made.boxes, INTERVAL)
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, detection_interval=INTERVAL, min_frames=2)
    with serving(settings, detector=detector) as running:
        info = httpx.get(f"{running.url}/info").json()["scene"]
        response = httpx.post(f"{running.url}/predict/scene", files={"video": ("s.mp4", video)}, timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        # The same boxes sent as MOT tracks get the same answer: the scene path is detection, tracking, then
        # exactly the tracks pipeline.
        mot = "".join(
            f"{int(frame)},{track['track_id']},{left},{top},{width},{height}\n"
            for track in answer["tracks"]
            for frame, left, top, width, height in track["track_boxes"]
        )
        files = {"video": ("s.mp4", video), "tracks": ("t.txt", mot.encode())}
        replay = httpx.post(f"{running.url}/predict/tracks", files=files, timeout=60).json()
    assert info["enabled"] and info["detector"] == "ground-truth stub" and info["tracker"].startswith("bytetrack")
    assert info["detection_interval"] == INTERVAL
    assert detector.shown == list(range(0, 40, INTERVAL)) and detector.wrong_pixels == []  # every k-th, once
    assert answer["input"]["tracks_source"] == "detector"
    assert answer["input"]["frames_decoded"] >= 40 - INTERVAL + 1  # the detection pass decodes up to the end

    # Every box is a walker's ground-truth box on a detected frame, and every walker seen on 3+ detected frames
    # is in a track. ByteTrack confirms a track on its second detection in a row, and where one walker hides
    # another it may carry a track over to the other one (as trackers do), so a track is only mostly one walker.
    seen = [b.track_id for b in made.boxes if b.visibility >= MIN_VISIBILITY and b.frame % INTERVAL == 0]
    walkers = {walker for walker in seen if seen.count(walker) >= 3}
    tracked = []
    for track in answer["tracks"]:
        assert track["track_id"] >= 1 and all(row[0] % INTERVAL == 1 for row in track["track_boxes"])
        votes = []
        for frame, *box in track["track_boxes"]:
            truth = [b for b in made.boxes if b.frame == frame - 1]
            best = max(truth, key=lambda b: _iou(box, [b.left, b.top, b.width, b.height]))
            assert _iou(box, [best.left, best.top, best.width, best.height]) > 0.95
            votes.append(best.track_id)
        assert max(votes.count(walker) for walker in votes) >= len(votes) / 2, f"track {track['track_id']}: {votes}"
        tracked += votes
    assert len(walkers) >= 3 and walkers <= set(tracked), (walkers, set(tracked))
    print(f"{len(tracked)} of {len(seen)} detections in {len(answer['tracks'])} tracks")
    assert len(tracked) >= 0.75 * len(seen)
    for ours, theirs in zip(answer["tracks"], replay["tracks"], strict=True):
        assert ours["frames_used"] == theirs["frames_used"] and ours["boxes_used"] == theirs["boxes_used"]
        np.testing.assert_allclose(
            [a["probability"] for a in ours["attributes"]], [a["probability"] for a in theirs["attributes"]], atol=1e-5
        )


@pytest.mark.parametrize("threads", [1, 4])
def test_the_detection_pass_decodes_the_same_pixels_every_time(scene, monkeypatch, threads):
    """Decoded pixels do not depend on the run or on FFmpeg's threads (frame threading forced on here, where the
    scene is too small to get it): a stub that recognised frames by their pixels would pass or fail by chance
    otherwise."""
    monkeypatch.setattr(video_module, "MIN_PIXELS_FOR_THREADS", 0)
    _, video, decoded = scene
    limits = DecodeLimits.from_settings(Settings(decode_threads=threads))
    wanted = range(0, len(decoded), INTERVAL)
    for _ in range(5):
        got: dict[int, np.ndarray] = {}
        index = read_index(io.BytesIO(video), limits, Deadline(30))
        decode_frames(io.BytesIO(video), index, wanted, FrameCounter(limits, Deadline(30)), got.__setitem__)
        assert sorted(got) == list(wanted)
        assert [i for i in wanted if not np.array_equal(got[i], decoded[i])] == []


def test_a_torchvision_detector_loads_its_weights_from_a_local_file(tiny_checkpoint, scene, tmp_path):
    """Random weights (nothing can be downloaded here): the service starts, says so in /info and answers."""
    import torchvision

    torch.manual_seed(0)
    name = "ssdlite320_mobilenet_v3_large"
    weights = tmp_path / "detector.pth"
    torch.save(torchvision.models.get_model(name, weights=None, weights_backbone=None).state_dict(), weights)
    _, video, _ = scene
    # A real detector on a CPU that other tests may share: deadlines for correctness, not speed.
    scene_settings = dict(detector=name, detector_weights=weights, detection_interval=4, decode_timeout_s=120)
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, **scene_settings)
    with serving(settings) as running:
        info = httpx.get(f"{running.url}/info").json()["scene"]
        headers = {"Content-Type": "video/mp4"}
        response = httpx.post(f"{running.url}/predict/scene", content=video, headers=headers, timeout=120)
    assert info["detector"] == name and info["detector_weights"] == str(weights) and info["enabled"]
    assert response.status_code == 200, response.text
    decoded = response.json()["input"]
    assert decoded["frames_decoded"] >= len(range(0, decoded["total_frames"], 4))  # the detection pass ran


def test_a_detector_that_cannot_load_stops_startup_with_the_reason(tmp_path, monkeypatch):
    cpu = torch.device("cpu")
    with pytest.raises(StartupError, match="not a torchvision detection model"):
        TorchvisionDetector.load("yolo_v99", None, cpu)
    # No local file: torchvision's download, which the tests' network guard refuses, as an offline host would.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(StartupError, match="could not be downloaded.*set VTFPAR_DETECTOR_WEIGHTS"):
        TorchvisionDetector.load("ssdlite320_mobilenet_v3_large", None, cpu)
    pickled = tmp_path / "code.pth"
    torch.save({"payload": io.BytesIO(b"not a tensor")}, pickled)  # needs unpickling beyond tensors
    with pytest.raises(StartupError, match="VTFPAR_DETECTOR_WEIGHTS=.*code.pth cannot be loaded"):
        TorchvisionDetector.load("ssdlite320_mobilenet_v3_large", pickled, cpu)
    wrong = tmp_path / "wrong.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, wrong)
    with pytest.raises(StartupError, match="wrong.pth cannot be loaded into ssdlite320_mobilenet_v3_large"):
        TorchvisionDetector.load("ssdlite320_mobilenet_v3_large", wrong, cpu)


class SlowDetector:
    """Finds no one, taking ``seconds`` a frame, as detection on a CPU takes its time."""

    name = "slow stub"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def detect(self, frames):
        time.sleep(self.seconds * len(frames))
        return [(np.zeros((0, 4)), np.zeros(0)) for _ in frames]


def test_the_decode_deadline_of_a_scene_grows_with_the_frames_detected(scene):
    """40 frames at 20 ms each take 0.8 s: past a fixed 0.3-s deadline, within 0.3 s plus 50 ms a frame."""
    _, video, _ = scene
    limits = DecodeLimits.from_settings(Settings())

    def track(seconds_per_frame: float):
        tracker = SceneTracker(SlowDetector(0.02), 1, seconds_per_frame)
        index = read_index(io.BytesIO(video), limits, Deadline(30))
        return tracker.track(io.BytesIO(video), index, FrameCounter(limits, Deadline(0.3)))

    assert track(0.05).boxes == {}
    with pytest.raises(ServiceError) as fixed:
        track(0.0)
    assert fixed.value.code == ErrorCode.DECODE_TIMEOUT
