"""Preprocessing shared by training and serving, so the two cannot drift.

Frames are RGB ``uint8`` arrays ``[H, W, 3]`` (numpy, or torch tensors); the frames of one clip may differ in
size (tracker crops). Each frame becomes a square of the tower's input size S: padded with black to a max(H, W)
square (centred, or at the top left for data padded on the right) and resized with antialiased bilinear
interpolation, or stretched to S x S; then normalised with the preset's mean/std.

The padded max(H, W) square is never built: resizing is separable, so ``fit`` resizes the long side first (it
needs no padding) and pads the short side only after that, at height (or width) S; ``finish`` resizes the other
side. The result is the same as padding first, but a frame H x W never costs more than L x S pixels (L its long
side) where the padded square costs L x L: a fitted 1080p frame is 1920 x 224 x 3 bytes, 1.3 MB. Training and CPU
serving run both halves on the CPU (the service keeps each clip as uint8 squares, ``squares_uint8``, and converts
to floats batch-wise); the service on CUDA runs ``fit`` on its decode threads and ``finish`` batch-wise on the GPU.

Frame-index sampling picks which T frames of a tracklet or clip the model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import PADDING_MODES

SAMPLING_MODES = ("segment_middle", "segment_random", "random_subset")

Frame = np.ndarray | torch.Tensor  # RGB uint8 [H, W, 3]


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(images.shape[-2:]) == (height, width):
        return images
    if images.dtype == torch.uint8:  # torch's fast uint8 kernels want channels-last
        images = images.contiguous(memory_format=torch.channels_last)
    # Bilinear with antialiasing is PIL's resize (the reference's) on both up- and downscaling.
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def _fit(images: torch.Tensor, size: int, padding: str) -> torch.Tensor:
    """The first, separable half of making a square: the long side resized to ``size`` and the short side padded
    to the long side's original length (black), so one side is ``size`` and the other is left to resize."""
    height, width = images.shape[-2:]
    side = max(height, width)
    if height >= width:
        images = _resize(images, size, width)
        left = (side - width) // 2 if padding == "centre" else 0
        return images if padding == "stretch" else F.pad(images, (left, side - width - left, 0, 0))
    images = _resize(images, height, size)
    top = (side - height) // 2 if padding == "centre" else 0
    return images if padding == "stretch" else F.pad(images, (0, 0, top, side - height - top))


def _finish(images: torch.Tensor, size: int, compute_dtype: torch.dtype | None) -> torch.Tensor:
    """The second half: the remaining side resized, to floats in [0, 1]. On CPU the resizing runs on uint8 by
    default (torch's vectorised uint8 kernels are about 7x faster there and round like PIL); elsewhere (CUDA)
    in float32. The two differ by at most 1/255 per pixel."""
    if compute_dtype is None:
        compute_dtype = torch.uint8 if images.device.type == "cpu" else torch.float32
    if compute_dtype == torch.uint8:  # back to the standard layout, where the model's elementwise ops are fast
        return _resize(images, size, size).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    images = images if images.is_floating_point() else images.to(compute_dtype).div_(255.0)
    return _resize(images, size, size).float().clamp_(0.0, 1.0)


def square_uint8(images: torch.Tensor, size: int, padding: str = "centre") -> torch.Tensor:
    """``images [N, 3, H, W]`` uint8 -> ``[N, 3, size, size]`` uint8: what ``square`` computes on CPU, before its
    conversion to floats."""
    return _resize(_fit(images, size, padding), size, size)


def square(images: torch.Tensor, size: int, padding: str = "centre", compute_dtype: torch.dtype | None = None):
    """``images [N, 3, H, W]`` uint8 -> ``[N, 3, size, size]`` floats in [0, 1], padded with black or stretched;
    with ``compute_dtype=torch.float32``, every step in float (what the GPU computes for its half)."""
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown padding {padding!r}; expected one of {PADDING_MODES}")
    if compute_dtype is not None and compute_dtype != torch.uint8:
        images = images.to(compute_dtype).div_(255.0)
    return _finish(_fit(images, size, padding), size, compute_dtype)


def as_tensor(frame: Frame) -> torch.Tensor:
    """A frame as a uint8 ``[H, W, 3]`` tensor (shares memory with a writable numpy array)."""
    if isinstance(frame, torch.Tensor):
        tensor = frame
    else:
        if not frame.flags.writeable:  # e.g. np.asarray(PIL image); torch refuses to share read-only memory
            frame = frame.copy()
        tensor = torch.from_numpy(frame)
    if tensor.ndim != 3 or tensor.shape[2] != 3 or tensor.dtype != torch.uint8:
        raise ValueError(f"expected an RGB uint8 frame [H, W, 3], got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor


def _by_size(frames: Sequence[Frame]) -> list[tuple[list[int], torch.Tensor]]:
    """Frames grouped by size, each group stacked as ``[N, 3, H, W]`` uint8, with the frames' positions."""
    tensors = [as_tensor(frame) for frame in frames]
    groups: dict[tuple[int, int], list[int]] = {}
    for position, tensor in enumerate(tensors):
        groups.setdefault((tensor.shape[0], tensor.shape[1]), []).append(position)
    return [
        (positions, torch.stack([tensors[p] for p in positions]).permute(0, 3, 1, 2)) for positions in groups.values()
    ]


@dataclass(frozen=True)
class Preprocess:
    """Turns RGB frames into the normalised tensor ``[T, 3, S, S]`` the model takes."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    padding: str = "centre"

    @classmethod
    def from_config(cls, config) -> Preprocess:
        return cls(image_size=config.image_size, mean=tuple(config.mean), std=tuple(config.std), padding=config.padding)

    def fit(self, frames: Sequence[Frame]) -> list[torch.Tensor]:
        """The host's half, in uint8: each frame ``[H, W, 3]`` becomes ``[size, L, 3]`` or ``[L, size, 3]`` (L the
        original long side, or the short side when stretching). The service hands these to the GPU, which
        finishes with one resize per batch: L x size x 3 bytes a frame (1.3 MB for a 1080p frame)."""
        fitted: list[torch.Tensor] = [torch.empty(0)] * len(frames)
        for positions, images in _by_size(frames):
            for position, image in zip(positions, _fit(images, self.image_size, self.padding), strict=True):
                fitted[position] = image.permute(1, 2, 0)
        return fitted

    def finish(self, fitted: Sequence[torch.Tensor]) -> torch.Tensor:
        """``fit``'s frames (on any device) -> ``[T, 3, S, S]`` floats in [0, 1], before normalisation."""
        return self._batched(fitted, lambda images: _finish(images, self.image_size, None))

    def squares(self, frames: Sequence[Frame]) -> torch.Tensor:
        """Frames of any sizes -> ``[T, 3, S, S]`` floats in [0, 1] (before normalisation): ``fit`` then
        ``finish``, without the round trip through per-frame tensors."""
        return self._batched(frames, lambda images: square(images, self.image_size, self.padding))

    def squares_uint8(self, frames: Sequence[Frame]) -> torch.Tensor:
        """Frames of any sizes -> ``[T, 3, S, S]`` uint8, the CPU's ``squares`` before its conversion to floats
        (``from_uint8`` finishes it): a quarter of the memory, for clips that wait in a queue."""
        return self._batched(frames, lambda images: square_uint8(images, self.image_size, self.padding), torch.uint8)

    def square_frame(self, frame: Frame) -> np.ndarray:
        """One frame -> ``[S, S, 3]`` uint8, a frame again: ``squares_uint8`` of a clip of such frames equals
        ``squares_uint8`` of the originals, so a frame can be shrunk to S x S x 3 bytes as soon as it is cut."""
        images = as_tensor(frame).permute(2, 0, 1).unsqueeze(0)
        return square_uint8(images, self.image_size, self.padding)[0].permute(1, 2, 0).numpy()

    @staticmethod
    def from_uint8(squares: torch.Tensor) -> torch.Tensor:
        """``squares_uint8``'s result (any leading dimensions) -> floats in [0, 1], as ``squares`` gives them."""
        return squares.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)

    def _batched(self, frames: Sequence[Frame], make_squares, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if len(frames) == 0:
            raise ValueError("no frames to preprocess")
        groups = _by_size(frames)
        if len(groups) == 1:  # frames of one size (a video): already in order
            return make_squares(groups[0][1])
        size = self.image_size
        out = torch.empty((len(frames), 3, size, size), dtype=dtype, device=groups[0][1].device)
        for positions, images in groups:
            out[positions] = make_squares(images)
        return out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
        return (images - mean).div_(std)

    def __call__(self, frames: Sequence[Frame]) -> torch.Tensor:
        return self.normalize(self.squares(frames))


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
