import numpy as np
import pytest
import torch

from model import Preprocess, pad_to_square, sample_frame_indices


def test_pad_to_square_centres_the_crop_on_black():
    crop = np.full((8, 4, 3), 200, dtype=np.uint8)
    square = pad_to_square(crop)
    assert square.shape == (8, 8, 3)
    assert (square[:, 2:6] == 200).all()
    assert (square[:, :2] == 0).all() and (square[:, 6:] == 0).all()


def test_preprocess_resizes_and_normalises():
    preprocess = Preprocess(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    frames = [np.full((64, 32, 3), 255, dtype=np.uint8), np.zeros((20, 10, 3), dtype=np.uint8)]
    out = preprocess(frames)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out[0, :, 8, 8], torch.ones(3))  # white centre -> +1
    assert torch.allclose(out[0, :, 8, 0], -torch.ones(3))  # black border -> -1
    assert torch.allclose(out[1], -torch.ones(3, 16, 16))


def test_segment_middle_sampling_is_even_and_ordered():
    assert sample_frame_indices(60, 6) == [5, 15, 25, 35, 45, 55]
    assert sample_frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]


def test_segment_random_sampling_stays_in_its_segments():
    rng = np.random.default_rng(0)
    for _ in range(50):
        indices = sample_frame_indices(60, 6, "segment_random", rng)
        assert all(10 * i <= index < 10 * (i + 1) for i, index in enumerate(indices))


def test_random_subset_is_the_reference_sampling():
    rng = np.random.default_rng(0)
    picks = [sample_frame_indices(20, 6, "random_subset", rng) for _ in range(20)]
    assert all(len(set(p)) == 6 for p in picks)
    assert any(p != sorted(p) for p in picks), "the reference's subsets are unordered"
    assert len(sample_frame_indices(3, 6, "random_subset", rng)) == 6


def test_sampling_rejects_nonsense():
    with pytest.raises(ValueError):
        sample_frame_indices(0, 6)
    with pytest.raises(ValueError):
        sample_frame_indices(10, 6, "uniform")


def test_read_only_frames_are_accepted_without_warnings():
    import warnings

    frame = np.full((8, 8, 3), 100, dtype=np.uint8)
    frame.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Preprocess(image_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))([frame])
    assert torch.allclose(out, torch.full((1, 3, 8, 8), 100 / 255))
