"""Clips for the model: frame sampling, augmentation, and the per-epoch batch order."""

import numpy as np
import pytest
import torch

from model import Preprocess
from training.data.augment import Augment
from training.data.dataset import ClipDataset, EpochBatches, frame_indices
from training.data.records import Tracklet

from .conftest import write_frame

PREPROCESS = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture
def numbered_tracklet(tmp_path):
    """A 12-frame tracklet whose frame i is uniformly grey level 20 * i: the pixels say which frame it is."""
    frames = tuple(write_frame(tmp_path / "t" / f"F{i:03d}.png", value=20 * i, size=(16, 16)) for i in range(12))
    return Tracklet(name="t", identity="t", labels=np.array([1, 0], np.uint8), frame_files=frames)


def frame_numbers(clip):
    grey = (clip[:, :, 8, 8] * 0.5 + 0.5) * 255
    return [int(round(v / 20)) for v in grey[:, 0].tolist()]


def test_training_sampling_is_ordered_and_evaluation_is_deterministic(numbered_tracklet):
    train = ClipDataset([numbered_tracklet], PREPROCESS, 4, "segment_random", seed=3)
    for epoch in range(5):
        frames, labels, index = train[(epoch, 0)]
        numbers = frame_numbers(frames)
        assert numbers == sorted(numbers) and len(set(numbers)) == 4
        assert [n // 3 for n in numbers] == [0, 1, 2, 3]  # one frame per segment of 3
    assert labels.tolist() == [1.0, 0.0] and index == 0
    assert not all(frame_numbers(train[(e, 0)][0]) == frame_numbers(train[(0, 0)][0]) for e in range(1, 5))
    evaluation = ClipDataset([numbered_tracklet], PREPROCESS, 4, "segment_middle")
    assert frame_numbers(evaluation[(0, 0)][0]) == frame_numbers(evaluation[(9, 0)][0]) == [1, 4, 7, 10]
    single = ClipDataset([numbered_tracklet], PREPROCESS, 4, "single_frame")
    assert frame_numbers(single[(0, 0)][0]) == [6, 6, 6, 6]


def test_reference_sampling_is_unordered_distinct_frames(numbered_tracklet):
    clips = ClipDataset([numbered_tracklet], PREPROCESS, 6, "random_subset", seed=1)
    orders = [frame_numbers(clips[(e, 0)][0]) for e in range(6)]
    assert all(len(set(o)) == 6 for o in orders)
    assert any(o != sorted(o) for o in orders)


def test_same_key_same_clip_whatever_the_process(numbered_tracklet):
    augment = Augment.for_image_size(32)
    a = ClipDataset([numbered_tracklet], PREPROCESS, 4, "segment_random", augment, seed=9)
    b = ClipDataset([numbered_tracklet], PREPROCESS, 4, "segment_random", augment, seed=9)
    assert torch.equal(a[(2, 0)][0], b[(2, 0)][0])
    assert not torch.equal(a[(2, 0)][0], a[(3, 0)][0])


def test_augmentation_pads_crops_and_flips_per_frame_or_per_clip():
    assert Augment.for_image_size(224).pad == 10 and Augment.for_image_size(32).pad == 1
    frames = torch.rand(6, 3, 16, 16)
    rng = np.random.default_rng(0)
    out = Augment(pad=3, flip_prob=0.5)(frames, rng)
    assert out.shape == frames.shape
    # Every output frame is a shifted (and maybe mirrored) window of its zero-padded input.
    padded = torch.nn.functional.pad(frames, (3, 3, 3, 3))
    for t in range(6):
        windows = [padded[t, :, y : y + 16, x : x + 16] for y in range(7) for x in range(7)]
        assert any(torch.equal(out[t], w) or torch.equal(out[t], w.flip(-1)) for w in windows)
    per_frame = [Augment(pad=3)(frames, np.random.default_rng(s)) for s in range(4)]
    assert any(not torch.equal(o[0] - frames[0], o[1] - frames[1]) for o in per_frame)
    same = torch.rand(1, 3, 16, 16).expand(6, 3, 16, 16).clone()
    clip_wise = Augment(pad=3, per_clip=True)(same, np.random.default_rng(5))
    assert all(torch.equal(clip_wise[0], clip_wise[t]) for t in range(6))


def test_epoch_batches_split_one_permutation_across_processes_and_skip_on_resume():
    ranks = [EpochBatches(23, batch_size=3, seed=4, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 3  # 23 // 6: the incomplete last global batch is dropped
    seen = [i for r in ranks for batch in r.batches(1) for _, i in batch]
    assert len(seen) == len(set(seen)) == 18
    assert all(e == 1 for r in ranks for batch in r.batches(1) for e, _ in batch)
    assert ranks[0].batches(1) != ranks[0].batches(2)
    assert ranks[1].batches(1, start_step=2) == ranks[1].batches(1)[2:]


def test_frame_indices_for_short_tracklets():
    rng = np.random.default_rng(0)
    assert frame_indices(2, 4, "segment_middle", rng) == [0, 0, 1, 1]
    assert sorted(frame_indices(3, 6, "random_subset", rng)) != list(range(6))
