"""Attributes per person from a full-frame video: /predict/tracks (the client's tracks) and /predict/scene
(the service's own detector and tracker).

The pipeline is a few small functions, so that every front end (the FastAPI routes, ``vtfpar annotate``, another
server) runs the same steps:

1. ``parse_tracks`` reads the client's MOT text or JSON (or ``SceneTracker.track`` detects and tracks);
2. ``plan_tracks`` picks each track's boxes (the frames /predict would sample) and its crop regions;
3. ``cut_crops`` cuts every track's crops in one decode pass over the frames needed, shrinking each to the
   model's input size (``Preprocess.square_frame``, uint8) as it is cut;
4. the model backend's ``prepare`` turns each track's crops into one clip;
5. ``submit_tracks`` sends every track through the batcher at once;
6. ``app.api.schemas.tracks_response`` writes the answer.

Steps 1-4 run on a decode thread within the upload's decode deadline (:meth:`TrackPipeline.read_tracks`,
:meth:`TrackPipeline.read_scene`, through ``Decoder.run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..backend import ModelBackend
from ..batching import BatchResult, Lane
from ..decoding import Deadline, DecodeLimits, FrameCounter, VideoIndex, read_index
from ..store.thumbnails import BestCrops
from .boxes import Box, TrackLimits, Tracks, check_boxes, parse_tracks
from .plan import Region, SkippedTrack, TrackPlan, cut_crops, plan_tracks
from .scene import Detector, SceneTracker, TorchvisionDetector, load_scene

__all__ = [
    "Box",
    "Detector",
    "PreparedTrack",
    "PreparedTracks",
    "Region",
    "SceneTracker",
    "SkippedTrack",
    "TorchvisionDetector",
    "TrackLimits",
    "TrackPipeline",
    "TrackPlan",
    "Tracks",
    "check_boxes",
    "cut_crops",
    "load_scene",
    "parse_tracks",
    "plan_tracks",
    "submit_tracks",
]


@dataclass
class PreparedTrack:
    plan: TrackPlan
    model_input: object  # one clip, as the model backend's ``prepare`` made it


@dataclass
class PreparedTracks:
    """Everything decoded and prepared for one request, ready for the batcher."""

    index: VideoIndex
    source: str  # where the tracks came from: "mot", "json" or "detector"
    box_count: int
    margin: float
    tracks: list[PreparedTrack]
    skipped: list[SkippedTrack]
    frames_decoded: int
    decode_s: float = 0.0
    thumbnails: list[np.ndarray | None] | None = None  # each track's best crop, when asked for (store=true)

    @property
    def codec(self) -> str:
        return self.index.codec


@dataclass(frozen=True)
class TrackPipeline:
    """What reading tracks needs from the service: limits, the model's clip length, ``square_frame`` (one crop
    to the model's input size) and ``prepare``, and the scene tracker when built-in detection is on. Holds no
    per-request state."""

    frames_per_clip: int
    limits: DecodeLimits
    track_limits: TrackLimits
    square_frame: Callable[[np.ndarray], np.ndarray]
    prepare: Callable[[list[np.ndarray]], object]
    scene: SceneTracker | None = None

    def read_tracks(
        self, video: BinaryIO, tracks_file: BinaryIO, margin: float, deadline: Deadline, thumbnails: bool = False
    ) -> PreparedTracks:
        """Steps 1-4 for the client's tracks: parse, plan, cut in one decode pass, prepare. The video is checked
        first (what it is, its limits), as /predict checks it but for its duration (the frames decoded bound the
        cost; see ``DecodeLimits.without_duration``), then the tracks."""
        index = read_index(video, self.limits.without_duration(), deadline)
        tracks = parse_tracks(tracks_file, self.track_limits)
        check_boxes(tracks, index.total_frames, index.width, index.height)
        return self._prepare(video, index, tracks, [], margin, FrameCounter(self.limits, deadline), thumbnails)

    def read_scene(
        self, video: BinaryIO, margin: float, deadline: Deadline, thumbnails: bool = False
    ) -> PreparedTracks:
        """Steps 1-4 with the service's own detector and tracker (a detection pass, then the crops pass)."""
        if self.scene is None:
            raise RuntimeError("built-in detection is off")  # the routes check first
        index = read_index(video, self.limits.without_duration(), deadline)
        counter = FrameCounter(self.limits, deadline)  # both passes count against the request's frame limit
        tracks, excess = _longest(self.scene.track(video, index, counter), self.track_limits.max_tracks)
        return self._prepare(video, index, tracks, excess, margin, counter, thumbnails)

    def _prepare(
        self,
        video: BinaryIO,
        index: VideoIndex,
        tracks: Tracks,
        skipped: list[SkippedTrack],
        margin: float,
        counter: FrameCounter,
        thumbnails: bool = False,
    ) -> PreparedTracks:
        plans, too_short = plan_tracks(
            tracks, self.frames_per_clip, self.limits.min_frames, margin, index.width, index.height
        )
        best = BestCrops([plan.boxes for plan in plans], index.width, index.height) if thumbnails else None
        crops = cut_crops(video, index, plans, counter, self.square_frame, best.wanted if best else None)
        # Each track's crops are let go as soon as its clip is made, so that they are not held twice.
        prepared = [PreparedTrack(plan, self.prepare(crops.pop(0))) for plan in plans]
        return PreparedTracks(
            index=index,
            source=tracks.source,
            box_count=tracks.box_count,
            margin=margin,
            tracks=prepared,
            skipped=sorted(too_short + skipped, key=lambda track: track.track_id),
            frames_decoded=counter.total,
            thumbnails=best.crops if best else None,
        )


def _longest(tracks: Tracks, max_tracks: int) -> tuple[Tracks, list[SkippedTrack]]:
    """At most ``max_tracks`` tracks, those with the most boxes; the others are skipped, saying why."""
    if len(tracks.boxes) <= max_tracks:
        return tracks, []
    ranked = sorted(tracks.boxes, key=lambda track_id: (-len(tracks.boxes[track_id]), track_id))
    reason = (
        f"the detector found {len(ranked)} tracks; the {max_tracks} with the most boxes are run (VTFPAR_MAX_TRACKS)"
    )
    kept = Tracks(tracks.source, {track_id: tracks.boxes[track_id] for track_id in ranked[:max_tracks]})
    return kept, [SkippedTrack(track_id, tracks.boxes[track_id], reason) for track_id in ranked[max_tracks:]]


async def submit_tracks(backend: ModelBackend, prepared: PreparedTracks) -> list[BatchResult]:
    """Step 5: every track to the model's footage lane at once (those beyond its room wait for room, in order);
    if one fails (or the caller is cancelled), the others leave the queue."""
    submitted = [asyncio.ensure_future(backend.submit(track.model_input, Lane.FOOTAGE)) for track in prepared.tracks]
    try:
        return list(await asyncio.gather(*submitted))
    finally:
        for task in submitted:
            task.cancel()
