"""Which crops each track gives the model, and cutting every track's crops in one decode pass.

A track's clip is its boxes sampled as /predict samples a video's frames (``model.sample_frame_indices``,
``segment_middle``, over the frames where the track has a box), each box grown by ``margin`` (a fraction of its
width on the left and right, of its height above and below) and clipped to the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from model import sample_frame_indices

from ..decoding import FrameCounter, VideoIndex, decode_frames
from .boxes import Box, Tracks


@dataclass(frozen=True)
class Region:
    """Whole pixels cut from a frame: columns ``left:right``, rows ``top:bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    def ltwh(self) -> list[int]:
        return [self.left, self.top, self.right - self.left, self.bottom - self.top]


@dataclass(frozen=True)
class TrackPlan:
    track_id: int
    boxes: list[Box]  # all of the track's boxes, in frame order
    used: list[Box]  # the boxes the model sees, in order (repeated when the track has fewer than it takes)
    regions: list[Region]  # what is cut for each used box


@dataclass(frozen=True)
class SkippedTrack:
    track_id: int
    boxes: list[Box]
    reason: str


def plan_tracks(
    tracks: Tracks, frames_per_clip: int, min_frames: int, margin: float, width: int, height: int
) -> tuple[list[TrackPlan], list[SkippedTrack]]:
    """The tracks to run, by id, and those skipped for having fewer than ``min_frames`` boxes."""
    plans, skipped = [], []
    for track_id in sorted(tracks.boxes):
        boxes = tracks.boxes[track_id]
        if len(boxes) < min_frames:
            reason = f"{len(boxes)} box(es); at least {min_frames} needed (VTFPAR_MIN_FRAMES)"
            skipped.append(SkippedTrack(track_id, boxes, reason))
            continue
        used = [boxes[i] for i in sample_frame_indices(len(boxes), frames_per_clip, "segment_middle")]
        regions = [crop_region(box, margin, width, height) for box in used]
        plans.append(TrackPlan(track_id, boxes, used, regions))
    return plans, skipped


def crop_region(box: Box, margin: float, width: int, height: int) -> Region:
    """The box grown by ``margin`` and clipped to the frame, in whole pixels (never empty for a box that
    overlaps the frame)."""
    grow_x, grow_y = margin * box.width, margin * box.height
    return Region(
        left=max(0, math.floor(box.left - grow_x)),
        top=max(0, math.floor(box.top - grow_y)),
        right=min(width, math.ceil(box.left + box.width + grow_x)),
        bottom=min(height, math.ceil(box.top + box.height + grow_y)),
    )


def cut_crops(
    file: BinaryIO,
    index: VideoIndex,
    plans: list[TrackPlan],
    counter: FrameCounter,
    shrink: Callable[[np.ndarray], np.ndarray],
    also: Mapping[int, Callable[[np.ndarray], None]] | None = None,
) -> list[list[np.ndarray]]:
    """Every track's crops, each ``shrink``-ed (made the model's input size) as soon as it is cut, from one decode
    pass over the frames the tracks need: a request holds the frame being decoded and T small crops per track,
    never full-size crops (64 tracks covering 1080p frames would be 2 GiB of them). ``also`` (frame -> function)
    sees whole frames in the same pass (the stored tracks' thumbnails)."""
    also = also or {}
    wanted: dict[int, list[tuple[int, int]]] = {}  # frame -> (track, slot) pairs that need it
    for track, plan in enumerate(plans):
        for slot, box in enumerate(plan.used):
            wanted.setdefault(box.frame, []).append((track, slot))
    crops: list[list[np.ndarray | None]] = [[None] * len(plan.used) for plan in plans]

    def keep(position: int, frame: np.ndarray) -> None:
        if position in also:
            also[position](frame)
        shrunk: dict[Region, np.ndarray] = {}  # tracks that cut the same region of this frame share its crop
        for track, slot in wanted.get(position, ()):
            region = plans[track].regions[slot]
            if region not in shrunk:
                shrunk[region] = shrink(frame[region.top : region.bottom, region.left : region.right])
            crops[track][slot] = shrunk[region]

    decode_frames(file, index, sorted(wanted.keys() | also.keys()), counter, keep)
    return crops  # type: ignore[return-value]  # every slot was filled: decode_frames hands over every target
