"""Pick frames out of an uploaded video with PyAV, decoding as little as possible.

Two passes over the uploaded file. The first (:func:`read_index`) only demuxes: it checks the codec allow-list,
the frame size and the duration, and reads every packet's timestamp and keyframe flag, which gives the exact
frame count and the presentation time of each frame (variable frame rate included) without decoding anything.
The second (:func:`decode_frames`) decodes only what a sorted set of display-order frames needs: forward for
nearby frames, and a seek to the keyframe before a target when that skips enough frames. ``decode_video`` asks
it for the model's frames (``model.sample_frame_indices``, the sampling training uses); ``/predict/tracks``
for the frames of every track's boxes at once.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import av
import av.error
import numpy as np
from av.codec.hwaccel import HWAccel
from av.video.reformatter import VideoReformatter

from model import sample_frame_indices

from ..errors import ErrorCode, ServiceError
from .limits import Deadline, DecodedMedia, DecodeLimits
from .sniff import MATROSKA, MP4, SNIFF_BYTES, MediaKind, sniff_video

log = logging.getLogger(__name__)

# A seek flushes the decoder and restarts at a keyframe; below this many skipped frames decoding on is cheaper.
MIN_FRAMES_SKIPPED_BY_SEEK = 8
# Frame threading only for frames this large (VGA): below it, handing frames between threads costs more CPU than
# it saves (a 256x128 clip took 40 % more CPU with 2 threads than with one).
MIN_PIXELS_FOR_THREADS = 640 * 480
# Every av.open runs FFmpeg's stream probing, which opens a decoder (a thread per core) and decodes the first frames
# of the video to learn what MP4 and Matroska headers already state (size, timestamps): for H.264 up to six frames,
# 2 ms of CPU per open on a 2-s 128x256 clip, the largest single cost of an upload after decoding itself. These
# options make the probe decoder single-threaded and skip all but keyframes; the demuxed packets and the frames
# decoded afterwards are identical (tests/app/test_decoding.py). Other containers (AVI, MPEG-TS, GIF) may need the
# probe's decoding to reconstruct timestamps, and keep it. Passed as ``options`` (every stream known when the header
# is read; the demuxer ignores them), not ``stream_options``, which PyAV refuses for a file that declares no stream
# before probing (a damaged Matroska file).
PROBE_DECODER_OPTIONS = {"threads": "1", "skip_frame": "nonkey"}


@dataclass(frozen=True)
class VideoIndex:
    """What the demux pass learnt about an upload's video stream."""

    kind: MediaKind
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
    index = read_index(file, limits, deadline)
    limits.check_frame_count(index.total_frames, "the video")
    indices = sample_frame_indices(index.total_frames, num_frames, "segment_middle")
    counter = FrameCounter(limits, deadline)
    picked: dict[int, np.ndarray] = {}
    decode_frames(file, index, sorted(set(indices)), counter, picked.__setitem__)
    return DecodedMedia(
        frames=[picked[i] for i in indices],
        indices=indices,
        total_frames=index.total_frames,
        source="video",
        container=index.kind.name,
        codec=index.codec,
        width=index.width,
        height=index.height,
        duration_s=index.duration_s,
        frames_decoded=counter.total,
    )


def read_index(file: BinaryIO, limits: DecodeLimits, deadline: Deadline) -> VideoIndex:
    """Sniff the upload and demux it (no decoding): codec, frame size and duration checked against ``limits``."""
    head = file.read(SNIFF_BYTES)
    if not head:
        raise ServiceError(ErrorCode.BAD_REQUEST, "the upload is empty")
    kind = sniff_video(head)
    with _ffmpeg_errors(kind):
        return _read_index(file, kind, limits, deadline)


def decode_frames(
    file: BinaryIO,
    index: VideoIndex,
    targets: Sequence[int],
    counter: FrameCounter,
    keep: Callable[[int, np.ndarray], None],
) -> None:
    """Decode the frames at ``targets`` (sorted, distinct display-order indices) in one pass over the file and
    hand each to ``keep`` as RGB, once and in order. The plan's cost is checked against the limit first."""
    if not targets:
        return
    kind = index.kind
    with _ffmpeg_errors(kind):
        counter.begin_pass()
        if index.frame_pts is None:
            counter.check_cost(targets[-1] + 1)
            _decode_counting(file, kind, targets, counter, keep)
            return
        steps = _plan(index, targets)
        counter.check_cost(_cost(steps))
        kept: set[int] = set()

        def keep_once(position: int, frame: np.ndarray) -> None:
            kept.add(position)
            keep(position, frame)

        try:
            _decode_steps(file, kind, index.frame_pts, steps, counter, keep_once)
        except _SeekMissed:
            # Counting from the start is a new plan: check its cost, and count its frames afresh. Frames already
            # handed over are not handed over again.
            counter.redo_pass()
            counter.check_cost(targets[-1] + 1)
            _decode_counting(file, kind, targets, counter, lambda i, frame: None if i in kept else keep(i, frame))


@contextlib.contextmanager
def _ffmpeg_errors(kind: MediaKind):
    try:
        yield
    except av.error.FFmpegError as exc:
        # FFmpeg's message names the upload's file object (a heap address, a descriptor): the log gets it, the
        # client gets what kind of error it was.
        log.info("the %s upload cannot be decoded: %s", kind.name, exc)
        raise ServiceError(
            ErrorCode.UNDECODABLE_MEDIA, f"the {kind.name} upload cannot be decoded: {exc.strerror or 'FFmpeg error'}"
        ) from None


class DecodeDeviceError(RuntimeError):
    """``VTFPAR_DECODE_DEVICE`` names a device this host cannot decode on."""


def _hwaccel(limits: DecodeLimits) -> HWAccel | None:
    """NVDEC, through the CUDA hwaccel of the FFmpeg that PyAV's wheels bundle (built with nvdec; it loads the
    driver's libcuda and libnvcuvid at run time). Each upload's decoder uses the device's primary CUDA context, the
    one torch holds, rather than creating a context of its own; frames come back to host memory, so sampling,
    conversion and limits are the CPU path's. Codecs NVDEC lacks (GIF) decode in software."""
    if limits.decode_device != "cuda":
        return None
    return HWAccel("cuda", allow_software_fallback=True, options={"primary_ctx": "1"})


def check_decode_device(limits: DecodeLimits) -> None:
    """At startup: decode a small H.264 clip on ``limits.decode_device``, or say why that fails. On CUDA the probe
    refuses software fallback and keeps its frames on the device: ``is_hwaccel`` only says a device context was
    made, and FFmpeg falls back to software when the driver's decoder library (NVIDIA_DRIVER_CAPABILITIES
    ``video``) is missing, so only frames still on the GPU prove NVDEC decoded them."""
    if limits.decode_device == "cpu":
        return
    clip = io.BytesIO()
    with av.open(clip, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for value in range(0, 256, 32):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), value, np.uint8), format="rgb24")))
        out.mux(stream.encode())
    probe = HWAccel(limits.decode_device, allow_software_fallback=False, options={"primary_ctx": "1"}, is_hw_owned=True)
    try:
        with _open(clip, MP4, limits, decoding=True, hwaccel=probe) as container:
            formats = [frame.format.name for frame in container.decode(container.streams.video[0])]
    except (av.error.FFmpegError, OSError, NotImplementedError) as exc:
        raise DecodeDeviceError(
            f"VTFPAR_DECODE_DEVICE={limits.decode_device}: cannot decode there (is the NVIDIA driver installed, with "
            f"the video capability?): {exc}"
        ) from None
    on_device = sum(name == limits.decode_device for name in formats)
    if len(formats) != 8 or on_device != len(formats):
        raise DecodeDeviceError(
            f"VTFPAR_DECODE_DEVICE={limits.decode_device}: a test clip decoded {len(formats)} of 8 frames, "
            f"{on_device} of them on the device (the others in software: {sorted(set(formats))}); with Docker, "
            "NVIDIA_DRIVER_CAPABILITIES must include video"
        )


def _open(
    file: BinaryIO, kind: MediaKind, limits: DecodeLimits, decoding: bool = False, hwaccel: HWAccel | None = None
) -> av.container.InputContainer:
    """The upload as a container; ``decoding``: its frames will be decoded (on ``limits.decode_device``, through
    ``hwaccel`` when given)."""
    file.seek(0)
    # format= is forced so FFmpeg never probes its way into another demuxer; timeout bounds each read;
    # metadata strings in uploads are not always valid UTF-8.
    return av.open(
        file,
        mode="r",
        format=kind.ffmpeg_format,
        timeout=limits.decode_timeout_s,
        metadata_errors="replace",
        options=PROBE_DECODER_OPTIONS if kind in (MP4, MATROSKA) else {},
        hwaccel=(hwaccel or _hwaccel(limits)) if decoding else None,
    )


def _video_stream(container: av.container.InputContainer, kind: MediaKind) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise ServiceError(ErrorCode.NO_VIDEO_STREAM, f"the {kind.name} upload has no video stream")
    return container.streams.video[0]


def _read_index(file: BinaryIO, kind: MediaKind, limits: DecodeLimits, deadline: Deadline) -> VideoIndex:
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
        keyframe_pts: list[int] = []
        last_end, packets = None, 0
        for packet in container.demux(stream):
            deadline.check()
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            packets += 1
            if packet.is_discard:  # decoded only as a reference; an edit list cuts it from the clip
                continue
            timestamps.append(packet.pts)
            if packet.is_keyframe and packet.pts is not None:
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
    return VideoIndex(
        kind=kind,
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


def _plan(index: VideoIndex, targets: Sequence[int]) -> list[_Step]:
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


class FrameCounter:
    """Counts one request's decoded frames against the limit and the deadline, over all its decoding passes.

    A pass redone from the start (a seek missed) counts against the limit once; ``total`` counts every frame."""

    def __init__(self, limits: DecodeLimits, deadline: Deadline) -> None:
        self.limits, self.deadline = limits, deadline
        self.count = 0  # frames counted against the limit
        self.total = 0  # frames decoded, redone passes included
        self._pass_start = 0

    def begin_pass(self) -> None:
        self._pass_start = self.count

    def redo_pass(self) -> None:
        self.count = self._pass_start

    def check_cost(self, cost: int) -> None:
        """Refuse a plan that would decode more than the limit allows, before decoding it."""
        needed = self.count + cost
        if needed > self.limits.max_frames_decoded:
            raise ServiceError(
                ErrorCode.CLIP_TOO_LONG,
                f"sampling this video needs {needed} decoded frames; the limit is {self.limits.max_frames_decoded}",
            )

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
    context = stream.codec_context
    context.thread_type = "AUTO"
    context.thread_count = limits.decode_threads if context.width * context.height >= MIN_PIXELS_FOR_THREADS else 1


def _decode_keeping(container, stream, keep_pts: set[int]):
    """Decoded frames, in display order, where frames that no other frame references (the non-reference B-frames
    of H.264/HEVC, MPEG-4 B-frames, unreferenced VP9 frames) are dropped before decoding unless their timestamp is
    in ``keep_pts``: half the decoding work of a typical H.264 clip, the same pixels for every frame kept."""
    context = stream.codec_context
    for packet in container.demux(stream):
        context.skip_frame = "NONREF" if packet.size and packet.pts not in keep_pts else "DEFAULT"
        yield from packet.decode()


# One converter per decode thread: frame.to_ndarray(format=...) sets up a new swscale context for every frame,
# which cost four times the conversion itself; a kept one is reused while the size and pixel format stay. Small
# frames convert on one thread: FFmpeg 8's swscale otherwise splits every frame over a pool of a thread per core, and
# waking them cost more CPU than converting (the decode threads already run in parallel). Large frames keep the pool:
# converted on one thread, 1080p frames of three concurrent /predict/tracks requests raised the server's peak memory
# by 0.9-1.5 GiB instead of 0.4 (tests/app/test_tracks_memory.py).
_converters = threading.local()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    converter = getattr(_converters, "rgb", None)
    if converter is None:
        converter = _converters.rgb = VideoReformatter()
    threads = 1 if frame.width * frame.height < MIN_PIXELS_FOR_THREADS else None
    return converter.reformat(frame, format="rgb24", threads=threads).to_ndarray()


def _decode_steps(file, kind, frame_pts: list[int], steps: list[_Step], counter: FrameCounter, keep) -> None:
    """Follow the plan, recognising each target by its presentation timestamp."""
    with _open(file, kind, counter.limits, decoding=True) as container:
        stream = _video_stream(container, kind)
        _configure_decoder(stream, counter.limits)
        target_pts = {frame_pts[step.target] for step in steps}
        frames = _decode_keeping(container, stream, target_pts)
        for step in steps:
            if step.keyframe is not None:
                container.seek(frame_pts[step.keyframe], stream=stream, backward=True, any_frame=False)
                frames = _decode_keeping(container, stream, target_pts)
            pts = frame_pts[step.target]
            for frame in frames:
                counter.tick(frame)
                if frame.pts is None or frame.pts > pts:
                    raise _SeekMissed()
                if frame.pts == pts:
                    keep(step.target, _rgb(frame))
                    break
            else:
                raise _SeekMissed()


def _decode_counting(file, kind, targets: Sequence[int], counter: FrameCounter, keep) -> None:
    """Decode from the start, numbering frames in output order; for streams without usable timestamps."""
    wanted = set(targets)
    with _open(file, kind, counter.limits, decoding=True) as container:
        stream = _video_stream(container, kind)
        _configure_decoder(stream, counter.limits)
        for position, frame in enumerate(container.decode(stream)):
            counter.tick(frame)
            if position in wanted:
                keep(position, _rgb(frame))
                wanted.discard(position)
                if not wanted:
                    return
    raise ServiceError(
        ErrorCode.UNDECODABLE_MEDIA,
        f"the video stopped decoding before frame {max(wanted)} of {max(wanted) + 1}+ was reached",
    )
