"""The default person detector (OpenCV's HOG): its answers' shape and scale, and how the service starts with or
without it. How well it finds real people is measured by ``benchmarks/hog.py`` on hand-boxed street footage."""

from __future__ import annotations

import builtins
import logging

import numpy as np
import pytest
import torch

from app.inference import StartupError
from app.settings import Settings
from app.tracks import load_scene

cv2 = pytest.importorskip("cv2", reason="the 'scene' extra (OpenCV) is not installed")
pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")

from app.tracks.hog import HogDetector  # noqa: E402  # after the skip: it needs OpenCV


def test_hog_answers_boxes_inside_the_frame_in_the_frames_scale():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    # A dark upright figure on a light ground, at the detector's size: wherever HOG fires, boxes must be on the
    # picture, and upscaling the frame must not change their scale.
    frame[40:200, 130:190] = 30
    for upscale in (1.0, 1.5):
        [(boxes, scores)] = HogDetector(upscale=upscale, min_score=0.0).detect([frame])
        assert boxes.shape == (len(scores), 4) and boxes.dtype == np.float32
        assert ((scores >= 0) & (scores < 1)).all()
        assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
        assert (boxes >= -16).all() and (boxes[:, [0, 2]] <= 320 + 16).all() and (boxes[:, [1, 3]] <= 240 + 16).all()
    [(nothing, _)] = HogDetector().detect([np.full((240, 320, 3), 128, np.uint8)])
    assert nothing.shape == (0, 4)


def test_hog_is_the_default_and_off_turns_detection_off():
    scene = load_scene(Settings(), torch.device("cpu"))
    assert scene is not None and scene.detector.name == "hog"
    assert load_scene(Settings(detector="off"), torch.device("cpu")) is None


def test_without_the_scene_extra_the_default_starts_with_detection_off_but_a_chosen_hog_fails(monkeypatch, caplog):
    real_import = builtins.__import__

    def no_opencv(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_opencv)
    with caplog.at_level(logging.WARNING):
        assert load_scene(Settings(), torch.device("cpu")) is None
    assert "detection is off" in caplog.text and "cv2" in caplog.text
    with pytest.raises(StartupError, match="VTFPAR_DETECTOR=hog"):
        load_scene(Settings(detector="hog"), torch.device("cpu"))


def test_frames_smaller_than_the_window_find_nobody():
    # OpenCV 4.14's detectMultiScale crashes the process on some of these; the detector must not call it.
    for shape in [(96, 160, 3), (60, 100, 3), (200, 40, 3)]:
        [(boxes, scores)] = HogDetector().detect([np.full(shape, 100, np.uint8)])
        assert boxes.shape == (0, 4) and scores.shape == (0,)
