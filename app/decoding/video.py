"""Pick the model's frames out of an uploaded video with PyAV, decoding as little as possible.

Two passes over the uploaded file. The first only demuxes: it checks the codec allow-list, the frame size
and the duration, and reads every packet's timestamp and keyframe flag, which gives the exact frame count and
the presentation time of each frame (variable frame rate included) without decoding anything. Frame indices
come from ``model.sample_frame_indices`` (the sampling training uses); the second pass then decodes only what
those frames need: forward from the start for nearby frames, and a seek to the keyframe before a target when
that skips enough frames.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import BinaryIO

import av
import av.error
import numpy as np

from model import sample_frame_indices

from ..errors import ErrorCode, ServiceError
from .limits import Deadline, DecodedMedia, DecodeLimits
from .sniff import SNIFF_BYTES, MediaKind, sniff_video

log = logging.getLogger(__name__)

# A seek flushes the decoder and restarts at a keyframe; below this many skipped frames decoding on is cheaper.
MIN_FRAMES_SKIPPED_BY_SEEK = 8


@dataclass(frozen=True)
class _Index:
    """What the demux pass learnt about the video stream."""

    codec: str
    width: int
    height: int
    duration_s: float | None
    frame_pts: list[int] | None  # presentation timestamps in display order; None when not usable
    keyframes: list[int]  # display-order positions of keyframes
    total_frames: int


@dataclass(frozen=True)
class _Step:
    target: int  # display-order index of a frame to keep
    keyframe: int | None  # display-order index of the keyframe to seek to first, or None to decode on


class _SeekMissed(Exception):
    """The decoder did not land on the expected timestamp; redo the clip by counting frames from the start."""


def decode_video(
    file: BinaryIO, num_frames: int, limits: DecodeLimits, deadline: Deadline | None = None
) -> DecodedMedia:
    """The ``num_frames`` frames sampled from a video upload; ``deadline`` defaults to the limits' own."""
    deadline = deadline or Deadline(limits.decode_timeout_s)
    head = file.read(SNIFF_BYTES)
    if not head:
        raise ServiceError(ErrorCode.BAD_REQUEST, "the upload is empty")
    kind = sniff_video(head)
    try:
        index = _read_index(file, kind, limits, deadline)
        limits.check_frame_count(index.total_frames, "the video")
        indices = sample_frame_indices(index.total_frames, num_frames, "segment_middle")
        targets = sorted(set(indices))
        counter = _Counter(limits, deadline)
        if index.frame_pts is None:
            _check_cost(targets[-1] + 1, limits)
            picked = _decode_counting(file, kind, targets, counter, limits)
        else:
            steps = _plan(index, targets)
            _check_cost(_cost(steps), limits)
            try:
                picked = _decode_steps(file, kind, index.frame_pts, steps, counter, limits)
            except _SeekMissed:
                # Counting from the start is a new plan: check its cost, and count its frames afresh.
                _check_cost(targets[-1] + 1, limits)
                counter.restart()
                picked = _decode_counting(file, kind, targets, counter, limits)
    except av.error.FFmpegError as exc:
        # FFmpeg's message names the upload's file object (a heap address, a descriptor): the log gets it, the
        # client gets what kind of error it was.
        log.info("the %s upload cannot be decoded: %s", kind.name, exc)
        raise ServiceError(
            ErrorCode.UNDECODABLE_MEDIA, f"the {kind.name} upload cannot be decoded: {exc.strerror or 'FFmpeg error'}"
        ) from None
    return DecodedMedia(
        frames=[picked[i] for i in indices],
        indices=indices,
        total_frames=index.total_frames,
        source="video",
        container=kind.name,
        codec=index.codec,
        width=index.width,
        height=index.height,
        duration_s=index.duration_s,
        frames_decoded=counter.total,
    )


def _open(file: BinaryIO, kind: MediaKind, limits: DecodeLimits) -> av.container.InputContainer:
    file.seek(0)
    # format= is forced so FFmpeg never probes its way into another demuxer; timeout bounds each read;
    # metadata strings in uploads are not always valid UTF-8.
    return av.open(
        file, mode="r", format=kind.ffmpeg_format, timeout=limits.decode_timeout_s, metadata_errors="replace"
    )


def _video_stream(container: av.container.InputContainer, kind: MediaKind) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise ServiceError(ErrorCode.NO_VIDEO_STREAM, f"the {kind.name} upload has no video stream")
    return container.streams.video[0]


def _read_index(file: BinaryIO, kind: MediaKind, limits: DecodeLimits, deadline: Deadline) -> _Index:
    with _open(file, kind, limits) as container:
        stream = _video_stream(container, kind)
        # No codec context means FFmpeg has no decoder for the stream at all.
        codec = stream.codec_context.codec.canonical_name if stream.codec_context is not None else "unknown"
        if codec not in limits.allowed_codecs:
            raise ServiceError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                f"video codec {codec!r} is not accepted; allowed: {sorted(limits.allowed_codecs)}",
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        limits.check_frame_size(width, height, "the video")
        duration_s = _header_duration(container, stream)
        _check_duration(duration_s, limits)

        timestamps: list[int | None] = []
        keyframe_pts: list[int | None] = []
        last_end, packets = None, 0
        for packet in container.demux(stream):
            deadline.check()
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            packets += 1
            if packet.is_discard:  # decoded only as a reference; an edit list cuts it from the clip
                continue
            timestamps.append(packet.pts)
            if packet.is_keyframe:
                keyframe_pts.append(packet.pts)
            if packet.pts is not None and packet.duration:
                last_end = max(last_end or 0, packet.pts + packet.duration)

    if stream.frames and packets < stream.frames:
        raise ServiceError(
            ErrorCode.UNDECODABLE_MEDIA,
            f"the {kind.name} upload is truncated: its header lists "
            f"{stream.frames} frames but only {packets} are present",
        )
    known = [t for t in timestamps if t is not None]
    usable = len(known) == len(timestamps) and len(set(known)) == len(known)
    frame_pts = sorted(known) if usable else None
    if duration_s is None and usable and known and stream.time_base:
        duration_s = float(((last_end or max(known)) - min(known)) * stream.time_base)
        _check_duration(duration_s, limits)
    keyframes = sorted(bisect.bisect_left(frame_pts, k) for k in keyframe_pts) if frame_pts else []
    return _Index(
        codec=codec,
        width=width,
        height=height,
        duration_s=duration_s,
        frame_pts=frame_pts,
        keyframes=keyframes,
        total_frames=len(timestamps),
    )


def _header_duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _check_duration(duration_s: float | None, limits: DecodeLimits) -> None:
    if duration_s is not None and duration_s > limits.max_duration_s:
        raise ServiceError(
            ErrorCode.CLIP_TOO_LONG, f"the video lasts {duration_s:.1f} s; the limit is {limits.max_duration_s:g} s"
        )


def _plan(index: _Index, targets: list[int]) -> list[_Step]:
    """Decode forward by default; seek to a target's keyframe when that skips enough frames."""
    steps, position = [], -1  # position: display index of the last frame decoded
    for target in targets:
        before = bisect.bisect_right(index.keyframes, target) - 1
        keyframe = index.keyframes[before] if before >= 0 else None
        seek = keyframe is not None and keyframe - position > MIN_FRAMES_SKIPPED_BY_SEEK
        steps.append(_Step(target, keyframe if seek else None))
        position = target
    return steps


def _cost(steps: list[_Step]) -> int:
    """Frames the plan decodes (give or take a B-frame decoder's few frames of reordering)."""
    cost, position = 0, -1
    for step in steps:
        start = step.keyframe if step.keyframe is not None else position + 1
        cost += step.target - start + 1
        position = step.target
    return cost


def _check_cost(cost: int, limits: DecodeLimits) -> None:
    if cost > limits.max_frames_decoded:
        raise ServiceError(
            ErrorCode.CLIP_TOO_LONG,
            f"sampling this video needs {cost} decoded frames; the limit is {limits.max_frames_decoded}",
        )


class _Counter:
    """Counts decoded frames against the limit (per decoding pass) and the deadline (over all passes)."""

    def __init__(self, limits: DecodeLimits, deadline: Deadline) -> None:
        self.count, self.total, self.limits, self.deadline = 0, 0, limits, deadline

    def restart(self) -> None:
        self.count = 0

    def tick(self, frame: av.VideoFrame) -> None:
        self.count += 1
        self.total += 1
        if self.count > self.limits.max_frames_decoded:
            raise ServiceError(
                ErrorCode.CLIP_TOO_LONG, f"decoding needed more than {self.limits.max_frames_decoded} frames"
            )
        self.deadline.check()
        # The header may understate the size; FFmpeg has decoded this frame already, but no more like it.
        self.limits.check_frame_size(frame.width, frame.height, "a video frame")


def _configure_decoder(stream, limits: DecodeLimits) -> None:
    # Frame threading is much faster than FFmpeg's slice default; the count is capped because several
    # uploads decode at once and all-core threading per decode would oversubscribe the CPU.
    stream.codec_context.thread_type = "AUTO"
    stream.codec_context.thread_count = limits.decode_threads


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _decode_steps(
    file, kind, frame_pts: list[int], steps: list[_Step], counter: _Counter, limits: DecodeLimits
) -> dict[int, np.ndarray]:
    """Follow the plan, recognising each target by its presentation timestamp."""
    picked: dict[int, np.ndarray] = {}
    with _open(file, kind, limits) as container:
        stream = _video_stream(container, kind)
        _configure_decoder(stream, limits)
        frames = container.decode(stream)
        for step in steps:
            if step.keyframe is not None:
                container.seek(frame_pts[step.keyframe], stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            target_pts = frame_pts[step.target]
            for frame in frames:
                counter.tick(frame)
                if frame.pts is None or frame.pts > target_pts:
                    raise _SeekMissed()
                if frame.pts == target_pts:
                    picked[step.target] = _rgb(frame)
                    break
            else:
                raise _SeekMissed()
    return picked


def _decode_counting(file, kind, targets: list[int], counter: _Counter, limits: DecodeLimits) -> dict[int, np.ndarray]:
    """Decode from the start, numbering frames in output order; for streams without usable timestamps."""
    picked: dict[int, np.ndarray] = {}
    wanted = set(targets)
    with _open(file, kind, limits) as container:
        stream = _video_stream(container, kind)
        _configure_decoder(stream, limits)
        for position, frame in enumerate(container.decode(stream)):
            counter.tick(frame)
            if position in wanted:
                picked[position] = _rgb(frame)
                if len(picked) == len(wanted):
                    return picked
    raise ServiceError(
        ErrorCode.UNDECODABLE_MEDIA,
        f"the video stopped decoding before frame {max(wanted)} of {max(wanted) + 1}+ was reached",
    )
