"""Tracklets -> model-ready clips, and the order in which training visits them.

Every random choice for one clip (which frames, which crop, which flip) comes from a generator seeded with
(seed, round, index), where round is the epoch (training) or the pass (stochastic evaluation). A clip is
therefore the same whichever worker, process or resumed run loads it, which is what makes ``--resume`` exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from model import Preprocess, sample_frame_indices

from .augment import Augment
from .frames import FrameReader
from .records import Tracklet

# model.preprocess's modes, plus an ablation: the middle frame repeated T times (what one frame tells).
SAMPLING_MODES = ("segment_middle", "segment_random", "random_subset", "single_frame")
# Leading words of the seed sequences, so clip draws and epoch orders never share a stream.
CLIP_STREAM, ORDER_STREAM = 1, 2


def frame_indices(num_available: int, num_frames: int, mode: str, rng: np.random.Generator) -> list[int]:
    if mode == "single_frame":
        return sample_frame_indices(num_available, 1, "segment_middle") * num_frames
    return sample_frame_indices(num_available, num_frames, mode, rng)


class ClipDataset(Dataset):
    """Item ``(round, index)`` -> ``(frames [T, 3, S, S] normalised, labels float [A], index)``."""

    def __init__(
        self,
        tracklets: list[Tracklet],
        preprocess: Preprocess,
        num_frames: int,
        sampling: str,
        augment: Augment | None = None,
        seed: int = 0,
    ):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLING_MODES}")
        self.tracklets = tracklets
        self.preprocess = preprocess
        self.num_frames = num_frames
        self.sampling = sampling
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.tracklets)

    def labels(self) -> np.ndarray:
        return np.stack([t.labels for t in self.tracklets])

    def __getitem__(self, key: tuple[int, int]):
        round_, index = key
        rng = np.random.default_rng([CLIP_STREAM, self.seed, round_, index])
        tracklet = self.tracklets[index]
        reader = FrameReader(tracklet)
        chosen = frame_indices(len(reader), self.num_frames, self.sampling, rng)
        images = self.preprocess.squares([reader[i] for i in chosen])
        if self.augment is not None:
            images = self.augment(images, rng)
        return self.preprocess.normalize(images), torch.from_numpy(tracklet.labels.astype(np.float32)), index


class EpochBatches:
    """Each epoch: a seeded permutation, cut into global batches of ``batch_size * world_size``; process
    ``rank`` takes its slice of each. The last incomplete global batch is dropped, so every process steps
    the same number of times and BatchNorm never sees a batch of one."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_items // (batch_size * world_size)

    def batches(self, epoch: int, start_step: int = 0) -> list[list[tuple[int, int]]]:
        order = np.random.default_rng([ORDER_STREAM, self.seed, epoch]).permutation(self.num_items)
        global_size = self.batch_size * self.world_size
        result = []
        for step in range(start_step, self.steps_per_epoch):
            start = step * global_size + self.rank * self.batch_size
            result.append([(epoch, int(i)) for i in order[start : start + self.batch_size]])
        return result


def shard_batches(indices: list[int], batch_size: int, round_: int = 0) -> list[list[tuple[int, int]]]:
    """Evaluation batches over ``indices`` in order (no dropping)."""
    return [[(round_, i) for i in indices[s : s + batch_size]] for s in range(0, len(indices), batch_size)]
