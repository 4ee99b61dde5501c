"""Preprocessing shared by training and serving, so the two cannot drift.

Frames are RGB ``uint8`` arrays ``[H, W, 3]``. Each is padded to a square with black borders (centred; the
reference trains on pre-padded "pad" datasets), resized to the tower's input size and normalised with the
preset's mean/std. Frame-index sampling picks which T frames of a tracklet or clip the model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SAMPLING_MODES = ("segment_middle", "segment_random", "random_subset")


def pad_to_square(frame: np.ndarray) -> np.ndarray:
    """Centre ``frame`` on a black square canvas of side max(H, W)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame [H, W, 3], got shape {tuple(frame.shape)}")
    height, width = frame.shape[:2]
    side = max(height, width)
    if height == width:
        return frame
    top, left = (side - height) // 2, (side - width) // 2
    canvas = np.zeros((side, side, 3), dtype=frame.dtype)
    canvas[top : top + height, left : left + width] = frame
    return canvas


@dataclass(frozen=True)
class Preprocess:
    """Turns a list of RGB frames into the normalised tensor ``[T, 3, S, S]`` the model takes."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config) -> Preprocess:
        return cls(image_size=config.image_size, mean=tuple(config.mean), std=tuple(config.std))

    def resize(self, frame: np.ndarray) -> torch.Tensor:
        """Pad to square and resize one frame to ``[3, S, S]`` floats in [0, 1] (before normalisation)."""
        square = np.ascontiguousarray(pad_to_square(frame))
        if not square.flags.writeable:  # e.g. np.asarray(PIL image); torch refuses to share read-only memory
            square = square.copy()
        image = torch.from_numpy(square).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if image.shape[-1] != self.image_size:
            # Bilinear with antialiasing approximates the reference's PIL resize on both up- and downscaling.
            image = F.interpolate(
                image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)
        return image[0]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=images.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(-1, 1, 1)
        return (images - mean) / std

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        if len(frames) == 0:
            raise ValueError("no frames to preprocess")
        return self.normalize(torch.stack([self.resize(f) for f in frames]))


def sample_frame_indices(
    num_available: int, num_frames: int, mode: str = "segment_middle", rng: np.random.Generator | None = None
) -> list[int]:
    """Pick ``num_frames`` indices out of ``range(num_available)``.

    - ``segment_middle``: split the clip into ``num_frames`` equal segments and take each middle; ordered,
      deterministic (evaluation and serving). Short clips repeat frames, still in order.
    - ``segment_random``: a random frame inside each segment; ordered (training).
    - ``random_subset``: the reference code's sampling: distinct frames in random order, with replacement
      when the tracklet is shorter than ``num_frames``.
    """
    if num_available < 1:
        raise ValueError("cannot sample from an empty clip")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; expected one of {SAMPLING_MODES}")
    segment = num_available / num_frames
    if mode == "segment_middle":
        return [min(int(segment * (i + 0.5)), num_available - 1) for i in range(num_frames)]
    rng = rng if rng is not None else np.random.default_rng()
    if mode == "segment_random":
        starts = [segment * i for i in range(num_frames)]
        return [min(int(s + rng.random() * segment), num_available - 1) for s in starts]
    if num_available >= num_frames:
        return [int(i) for i in rng.choice(num_available, size=num_frames, replace=False)]
    return [int(i) for i in rng.choice(num_available, size=num_frames, replace=True)]
