"""Training augmentation of docs/method.md §2.3: Resize -> Pad -> RandomCrop -> RandomHorizontalFlip.

Applied to frames already made square by ``model.Preprocess.squares`` (values in [0, 1]) and
before ``Preprocess.normalize``, so training and serving share every other step. The reference pads 10 pixels
at 224; the pad here scales with the input size. As in the reference, every frame gets its own crop and flip;
``per_clip`` uses one for the whole clip instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

REFERENCE_PAD, REFERENCE_SIZE = 10, 224


@dataclass(frozen=True)
class Augment:
    pad: int
    flip_prob: float = 0.5
    per_clip: bool = False

    @classmethod
    def for_image_size(
        cls, image_size: int, pad: int | None = None, flip_prob: float = 0.5, per_clip: bool = False
    ) -> Augment:
        if pad is None:
            pad = max(1, round(REFERENCE_PAD * image_size / REFERENCE_SIZE))
        if pad < 0 or not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"invalid augmentation: pad {pad}, flip probability {flip_prob}")
        return cls(pad=pad, flip_prob=flip_prob, per_clip=per_clip)

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``frames [T, 3, S, S]`` in [0, 1] -> augmented frames of the same shape."""
        count, _, height, width = frames.shape
        draws = 1 if self.per_clip else count
        tops = rng.integers(0, 2 * self.pad + 1, size=draws)
        lefts = rng.integers(0, 2 * self.pad + 1, size=draws)
        flips = rng.random(size=draws) < self.flip_prob
        padded = F.pad(frames, (self.pad,) * 4)  # zeros = black, like torchvision's Pad before ToTensor
        out = torch.empty_like(frames)
        for t in range(count):
            d = 0 if self.per_clip else t
            crop = padded[t, :, tops[d] : tops[d] + height, lefts[d] : lefts[d] + width]
            out[t] = crop.flip(-1) if flips[d] else crop
        return out
