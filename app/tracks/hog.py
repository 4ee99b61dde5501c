"""The built-in person detector: OpenCV's HOG + linear SVM people detector (Dalal and Triggs, CVPR 2005).

It ships inside OpenCV 4's wheels (``cv2.HOGDescriptor_getDefaultPeopleDetector``, trained on INRIA Person;
Apache-2.0), so it needs no download and runs on any CPU. OpenCV 5 moved it out of the main module, hence the
``<5`` pin. It sees upright people at least ``WINDOW_HEIGHT / upscale`` pixels tall; the torchvision detectors
(``VTFPAR_DETECTOR=<model name>``) see more, at a GPU's cost.
"""

from __future__ import annotations

import numpy as np

WINDOW_WIDTH, WINDOW_HEIGHT = 64, 128  # the detector's window
# INRIA's training windows frame a person 96 px tall in 128 with a margin all round; the box handed on is the
# person, not the window: 1/8 of the height off the top and bottom, 1/4 of the width off each side.
SHRINK_Y, SHRINK_X = 1 / 8, 1 / 4
STRIDE = (8, 8)
PYRAMID_SCALE = 1.05
NMS_IOU = 0.4  # HOG's grouping leaves boxes nested in bigger ones; overlapping people are rarely this close


class HogDetector:
    """``detect`` as the :class:`~app.tracks.scene.Detector` protocol wants it; scores are the SVM margins squashed
    into [0, 1) (``margin / (1 + margin)``), so ByteTrack's confidence thresholds apply."""

    name = "hog"

    def __init__(self, upscale: float = 1.0, min_score: float = 0.2) -> None:
        import cv2

        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise ImportError(f"OpenCV {cv2.__version__} has no HOG people detector: it needs opencv-python<5")
        self._cv2 = cv2
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = upscale
        self.min_score = min_score

    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cv2 = self._cv2
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # HOG takes the strongest channel's gradient; gray is 3x less
        if self.upscale != 1.0:
            gray = cv2.resize(gray, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        if gray.shape[0] < WINDOW_HEIGHT or gray.shape[1] < WINDOW_WIDTH:
            return _nothing()  # no person fits; and OpenCV 4.14 crashes (SIGSEGV) on some frames this small
        rects, margins = self.hog.detectMultiScale(gray, winStride=STRIDE, padding=(8, 8), scale=PYRAMID_SCALE)
        if len(rects) == 0:
            return _nothing()
        strength = np.asarray(margins, np.float32).reshape(-1)
        scores = strength / (1 + np.maximum(strength, 0))
        keep = cv2.dnn.NMSBoxes([list(map(int, rect)) for rect in rects], scores.tolist(), self.min_score, NMS_IOU)
        keep = np.asarray(keep, int).reshape(-1)
        x, y, w, h = np.asarray(rects, np.float32)[keep].T / self.upscale
        boxes = np.stack([x + SHRINK_X * w, y + SHRINK_Y * h, x + (1 - SHRINK_X) * w, y + (1 - SHRINK_Y) * h], axis=1)
        return boxes, scores[keep]


def _nothing() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
