"""Built-in detection and tracking for /predict/scene and live streams: a person detector on every k-th frame, and
ByteTrack joining its boxes into tracks.

ByteTrack is Roboflow's ``trackers`` package (Apache-2.0, a clean-room implementation of the paper), installed
with the optional ``scene`` extra; it is imported only when detection is on. The detector is OpenCV's HOG people
detector by default (``app.tracks.hog``, CPU, nothing to download), or any of torchvision's COCO detection models
(label 1 is "person"), with weights from a local file or torchvision's own download. Both run on a decode thread,
inside the upload's decode deadline.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch

from ..decoding import FrameCounter, VideoIndex, decode_frames
from ..inference import StartupError
from .boxes import Box, Tracks

log = logging.getLogger(__name__)

COCO_PERSON = 1  # the "person" label of torchvision's COCO detection models
DETECTION_BATCH = 4  # frames per detector call
FALLBACK_FPS = 25.0  # for ByteTrack's time scale when the video does not say how long it lasts
HOG, OFF = "hog", "off"  # VTFPAR_DETECTOR values beside torchvision's model names


class Detector(Protocol):
    name: str

    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person boxes (``[N, 4]`` pixels: x0, y0, x1, y1) and their scores (``[N]``) for each RGB frame."""
        ...


class TorchvisionDetector:
    def __init__(self, name: str, model: torch.nn.Module, device: torch.device) -> None:
        self.name = name
        self.model = model.eval().to(device)
        self.device = device

    @classmethod
    def load(cls, name: str, weights: Path | None, device: torch.device) -> TorchvisionDetector:
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models.detection)
        if name not in known:
            raise StartupError(f"VTFPAR_DETECTOR={name} is not a torchvision detection model; one of {known}")
        if weights is None:
            log.info("loading %s with torchvision's COCO weights (downloaded once into TORCH_HOME)", name)
            try:
                return cls(name, torchvision.models.get_model(name, weights="DEFAULT"), device)
            except Exception as exc:  # no network, a proxy, a full disk: urllib, OSError, RuntimeError ...
                raise StartupError(
                    f"VTFPAR_DETECTOR={name}: torchvision's weights could not be downloaded ({type(exc).__name__}: "
                    f"{exc}); set VTFPAR_DETECTOR_WEIGHTS to a local weights file"
                ) from None
        if not weights.is_file():
            raise StartupError(f"VTFPAR_DETECTOR_WEIGHTS={weights} does not exist")
        try:
            state = _read_state_dict(weights)  # before building the model: a bad file fails fast
            # weights_backbone=None: nothing is downloaded, every weight comes from the file.
            model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
            model.load_state_dict(state)
        except Exception as exc:  # torch, pickle (a file needing more than tensors) and safetensors each raise theirs
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StartupError(
                f"VTFPAR_DETECTOR_WEIGHTS={weights} cannot be loaded into {name}: {first_line}"
            ) from None
        log.info("loaded %s from %s", name, weights)
        return cls(name, model, device)

    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        images = [torch.from_numpy(frame).to(self.device).permute(2, 0, 1).float().div_(255) for frame in frames]
        with torch.inference_mode():
            outputs = self.model(images)
        found = []
        for output in outputs:
            person = output["labels"] == COCO_PERSON
            found.append((output["boxes"][person].cpu().numpy(), output["scores"][person].cpu().numpy()))
        return found


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never unpickle code


class SceneTracker:
    """A video in, tracks out: the detector every ``interval``-th frame, ByteTrack over its boxes. Holds no
    state between videos (each call makes its own ByteTrack)."""

    def __init__(self, detector: Detector, interval: int, seconds_per_frame: float = 0.0) -> None:
        try:
            import trackers  # noqa: F401  # checked here, at startup, rather than on the first request
        except ImportError as exc:
            raise StartupError(
                f"VTFPAR_DETECTOR needs the tracker of the 'scene' extra ({exc}): pip install 'vtfpar-serve[scene]'"
            ) from None
        self.detector = detector
        self.interval = interval
        self.seconds_per_frame = seconds_per_frame  # the decode deadline's allowance per frame detected
        self.tracker = f"bytetrack (trackers {importlib.metadata.version('trackers')})"

    def track(self, file: BinaryIO, index: VideoIndex, counter: FrameCounter) -> Tracks:
        """Detect and track people over the video; track ids count from 1, boxes are on the detected frames. The
        request's decode deadline grows by ``seconds_per_frame`` for each frame the detector will see: detection,
        not decoding, is the work, and it grows with the video's length."""
        import supervision as sv
        from trackers import ByteTrackTracker

        fps = index.total_frames / index.duration_s if index.duration_s else FALLBACK_FPS
        tracker = ByteTrackTracker(frame_rate=fps / self.interval)
        tracks = Tracks("detector")
        pending: list[tuple[int, np.ndarray]] = []

        def run_detector() -> None:
            found = self.detector.detect([frame for _, frame in pending])
            for (position, _), (boxes, scores) in zip(pending, found, strict=True):
                detections = sv.Detections(
                    xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                    confidence=np.asarray(scores, dtype=np.float32),
                )
                tracked = tracker.update(detections)
                assert tracked.tracker_id is not None  # ByteTrack sets it, -1 for detections not (yet) tracked
                for (x0, y0, x1, y1), track_id in zip(tracked.xyxy, tracked.tracker_id, strict=True):
                    if track_id >= 0:  # -1: not (yet) a confirmed track
                        box = Box(position, float(x0), float(y0), float(x1 - x0), float(y1 - y0), "the detector")
                        tracks.boxes.setdefault(int(track_id) + 1, []).append(box)
            pending.clear()

        def keep(position: int, frame: np.ndarray) -> None:
            pending.append((position, frame))
            if len(pending) == DETECTION_BATCH:
                run_detector()

        detected = range(0, index.total_frames, self.interval)
        counter.deadline.extend(len(detected) * self.seconds_per_frame)
        decode_frames(file, index, detected, counter, keep)
        if pending:
            run_detector()
        return tracks


def load_scene(settings, device: torch.device, detector: Detector | None = None) -> SceneTracker | None:
    """The configured scene tracker, or None when built-in detection is off (``VTFPAR_DETECTOR=off``).

    The default, HOG, needs the ``scene`` extra (ByteTrack and OpenCV 4); without it the service still starts, with
    detection off and a warning, whereas a detector the operator chose fails the start with the reason."""
    if detector is None and settings.detector == OFF:
        return None
    try:
        if detector is None and settings.detector == HOG:
            from .hog import HogDetector

            detector = HogDetector()
        elif detector is None:
            detector = TorchvisionDetector.load(settings.detector, settings.detector_weights, device)
        return SceneTracker(detector, settings.detection_interval, settings.detection_s_per_frame)
    except (ImportError, StartupError) as exc:
        if "detector" in settings.model_fields_set:
            raise StartupError(f"VTFPAR_DETECTOR={settings.detector}: {exc}") from None
        log.warning("built-in detection is off: %s (pip install 'vtfpar-serve[scene]')", exc)
        return None
