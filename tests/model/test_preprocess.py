import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import Preprocess, sample_frame_indices
from model.config import PADDING_MODES
from model.preprocess import square


def pad_then_resize(frame: np.ndarray, size: int, padding: str = "centre") -> torch.Tensor:
    """The straightforward definition: pad to a max(H, W) square on black, then resize the square."""
    height, width = frame.shape[:2]
    side = max(height, width)
    top, left = ((side - height) // 2, (side - width) // 2) if padding == "centre" else (0, 0)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[top : top + height, left : left + width] = frame
    image = torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)[0]


SIZES = [(256, 128), (100, 37), (37, 100), (12, 12), (5, 300), (20, 10), (1080, 1920), (1, 1)]


@pytest.mark.parametrize("padding", ["centre", "right"])
@pytest.mark.parametrize("height, width", SIZES)
def test_squares_equal_padding_then_resizing(height, width, padding):
    frame = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = pad_then_resize(frame, 32, padding)
    as_on_gpu = square(torch.from_numpy(frame).permute(2, 0, 1)[None], 32, padding, compute_dtype=torch.float32)
    assert torch.allclose(as_on_gpu[0], expected, atol=1e-6)
    # The CPU default resizes uint8 (PIL's rounding): at most one grey level away.
    on_cpu = Preprocess(32, (0.0,) * 3, (1.0,) * 3, padding).squares([frame])[0]
    assert (on_cpu - expected).abs().max() <= 1.01 / 255


def test_padding_modes_place_the_crop_as_named():
    white = np.full((64, 32, 3), 255, dtype=np.uint8)
    centre, right, stretch = (Preprocess(16, (0.0,) * 3, (1.0,) * 3, mode)([white])[0] for mode in PADDING_MODES)
    assert centre[:, :, 5:11].min() == 1 and centre[:, :, :3].max() == 0 and centre[:, :, 13:].max() == 0
    assert right[:, :, :7].min() == 1 and right[:, :, 9:].max() == 0
    assert stretch.min() == 1


def test_preprocess_resizes_and_normalises_frames_of_any_sizes():
    preprocess = Preprocess(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    frames = [
        np.full((64, 32, 3), 255, dtype=np.uint8),
        np.zeros((20, 10, 3), dtype=np.uint8),
        np.full((30, 30, 3), 255, dtype=np.uint8),
    ]
    out = preprocess(frames)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out[0, :, 8, 8], torch.ones(3))  # white centre -> +1
    assert torch.allclose(out[0, :, 8, 0], -torch.ones(3))  # black border -> -1
    assert torch.allclose(out[1], -torch.ones(3, 16, 16))
    assert torch.allclose(out[2], torch.ones(3, 16, 16))


def test_an_extreme_aspect_ratio_costs_no_padded_square():
    # Padding a 1 x 200,000 frame to its square first would need 480 GB of floats.
    frame = np.full((1, 200_000, 3), 255, dtype=np.uint8)
    assert Preprocess(16, (0.0,) * 3, (1.0,) * 3)([frame]).shape == (1, 3, 16, 16)
    line = square(torch.from_numpy(frame).permute(2, 0, 1)[None], 16, compute_dtype=torch.float32)[0]
    assert line[:, 7:9].min() > 0 and line[:, :7].max() == 0 and line[:, 9:].max() == 0


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


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("height, width", SIZES)
def test_the_services_gpu_split_stays_within_one_grey_level(height, width, padding):
    """On CUDA the service fits frames in uint8 on its decode threads and finishes them in float on the GPU."""
    from model.preprocess import _finish

    frame = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    preprocess = Preprocess(32, (0.0,) * 3, (1.0,) * 3, padding)
    fitted = preprocess.fit([frame])[0]
    assert fitted.dtype == torch.uint8 and 32 in fitted.shape[:2]
    finished = _finish(fitted.permute(2, 0, 1)[None], 32, torch.float32)[0]
    exact = square(torch.from_numpy(frame).permute(2, 0, 1)[None], 32, padding, compute_dtype=torch.float32)[0]
    assert (finished - exact).abs().max() <= 1.01 / 255


@pytest.mark.parametrize("padding", PADDING_MODES)
def test_uint8_squares_kept_until_the_batch_give_the_float_squares(padding):
    """The service keeps clips as uint8 squares (a quarter of the memory) and converts them batch-wise; a frame
    already made square (as a track's crop is when cut) is left as it is."""
    preprocess = Preprocess(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, padding=padding)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(90, 40), (20, 70), (90, 40), (32, 32)]]
    kept = preprocess.squares_uint8(frames)
    assert kept.dtype == torch.uint8 and kept.shape == (4, 3, 32, 32)
    assert torch.equal(preprocess.from_uint8(kept), preprocess.squares(frames))
    squared = [preprocess.square_frame(frame) for frame in frames]
    assert all(frame.shape == (32, 32, 3) and frame.dtype == np.uint8 for frame in squared)
    assert torch.equal(preprocess.squares_uint8(squared), kept)
