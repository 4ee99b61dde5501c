"""The thumbnail is the track's best crop: the largest box, unless the frame's edge cuts much of it off; at most
256 pixels on its longest side."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from app.store.thumbnails import MAX_SIDE, BestCrops, best_box, cut


def test_the_largest_box_wins_unless_the_edge_cuts_it():
    small, large = (10, 10, 30, 60), (10, 10, 50, 110)
    assert best_box([small, large], 200, 200) == 1
    half_outside = (-40, 10, 40, 170)  # twice the large box's area, half of it outside the frame
    assert best_box([half_outside, large], 200, 200) == 1
    assert best_box([small, small], 200, 200) == 0  # the earliest among equals


def test_a_crop_is_clipped_and_shrunk():
    frame = np.arange(600 * 800 * 3, dtype=np.uint32).reshape(600, 800, 3).astype(np.uint8)
    crop = cut(frame, (-10, 20, 100, 580))
    assert max(crop.shape[:2]) == MAX_SIDE and crop.shape[2] == 3
    small = cut(frame, (5, 6, 25, 46))
    assert np.array_equal(small, frame[6:46, 5:25])


def test_best_crops_are_cut_from_the_frames_they_need():
    box = SimpleNamespace
    tracks = [
        [box(frame=0, left=0, top=0, width=10, height=20), box(frame=3, left=5, top=5, width=20, height=40)],
        [box(frame=3, left=50, top=0, width=10, height=10)],
    ]
    best = BestCrops(tracks, 100, 100)
    assert set(best.wanted) == {3}
    frame = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    best.wanted[3](frame)
    assert np.array_equal(best.crops[0], frame[5:45, 5:25])
    assert np.array_equal(best.crops[1], frame[0:10, 50:60])
