"""Decoding uploads: the frames picked equal a plain full decode at the sampled indices, limits refuse media
before decoding it, and nothing but an allow-listed container ever reaches FFmpeg."""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import replace
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

import app.decoding.video as video_module
from app.decoding import DecodeLimits, decode_images, decode_video
from app.decoding.video import DecodeDeviceError, check_decode_device
from app.errors import ErrorCode, ServiceError
from app.settings import DEFAULT_CODECS
from benchmarks.media import VIDEO_FORMATS, decode_all, encode, frames, image_bytes
from model import sample_frame_indices

LIMITS = DecodeLimits(
    max_pixels=320 * 240,
    max_side=320,
    max_aspect_ratio=10,
    max_duration_s=60,
    max_frames_decoded=2000,
    max_upload_frames=64,
    min_frames=1,
    decode_timeout_s=10,
    decode_threads=2,
    allowed_codecs=frozenset(DEFAULT_CODECS),
)
T = 6


def _refused(code: ErrorCode, call, *args) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value.message
    return caught.value


@pytest.mark.parametrize("kind", sorted(VIDEO_FORMATS))
def test_picked_frames_equal_a_full_decode_at_the_sampled_indices(kind):
    data = encode(kind, frames(23, seed=3))
    reference = decode_all(data)
    media = decode_video(io.BytesIO(data), T, LIMITS)
    assert media.total_frames == len(reference) == 23
    assert media.indices == sample_frame_indices(23, T, "segment_middle")
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, reference[index])


def test_frames_no_other_frame_needs_are_skipped_unless_sampled():
    """A 2-s H.264 clip in one GOP, B-frames as x264 makes them: the frames up to the last sampled one must be
    read, but the non-reference B-frames among them need not be decoded; the sampled frames are exact all the same."""
    data = encode("mp4", frames(50, width=128, height=256), fps=25)
    reference = decode_all(data)
    media = decode_video(io.BytesIO(data), T, LIMITS)
    assert media.frames_decoded < (max(media.indices) + 1) * 3 // 4
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, reference[index])


@pytest.mark.parametrize("kind", ["mp4", "webm", "avi"])
def test_long_clips_are_sampled_by_seeking_not_decoded_end_to_end(kind):
    data = encode(kind, frames(300, width=32, height=32), gop=20)
    reference = decode_all(data)
    media = decode_video(io.BytesIO(data), T, LIMITS)
    assert media.frames_decoded < 300 // 2
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, reference[index])


def test_variable_frame_rate_clips_are_indexed_by_timestamp():
    pts_ms = [0, 40, 100, 110, 300, 310, 320, 600, 650, 900, 1500, 1510, 1520, 2400, 2410, 2420]
    data = encode("mp4", frames(len(pts_ms)), pts=pts_ms, gop=4)
    reference = decode_all(data)
    media = decode_video(io.BytesIO(data), T, LIMITS)
    assert media.total_frames == len(pts_ms)
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, reference[index])


def _no_decoding(monkeypatch):
    """Make any frame decoding fail the test: limits must refuse media before that."""

    def forbidden(*args, **kwargs):
        raise AssertionError("frames were decoded before the limits were checked")

    monkeypatch.setattr(video_module, "_decode_steps", forbidden)
    monkeypatch.setattr(video_module, "_decode_counting", forbidden)


def test_limits_refuse_before_decoding(monkeypatch):
    _no_decoding(monkeypatch)
    big = encode("mp4", frames(4, width=480, height=320))
    _refused(ErrorCode.TOO_MANY_PIXELS, decode_video, io.BytesIO(big), T, LIMITS)
    long = encode("mp4", frames(70, width=32, height=32), fps=1)
    _refused(ErrorCode.CLIP_TOO_LONG, decode_video, io.BytesIO(long), T, LIMITS)
    # A GIF has one keyframe, so sampling its last frames means decoding all of them.
    gif = encode("gif", frames(120, width=32, height=32))
    error = _refused(ErrorCode.CLIP_TOO_LONG, decode_video, io.BytesIO(gif), T, replace(LIMITS, max_frames_decoded=50))
    assert "decoded frames" in error.message


def test_a_clip_shorter_than_min_frames_is_refused():
    data = encode("mp4", frames(3))
    _refused(ErrorCode.TOO_FEW_FRAMES, decode_video, io.BytesIO(data), T, replace(LIMITS, min_frames=5))


def test_the_decode_deadline_stops_work():
    data = encode("avi", frames(50))
    _refused(ErrorCode.DECODE_TIMEOUT, decode_video, io.BytesIO(data), T, replace(LIMITS, decode_timeout_s=1e-9))


def test_codecs_outside_the_allow_list_are_refused():
    data = encode(("avi", "png", "rgb24"), frames(5))
    error = _refused(ErrorCode.UNSUPPORTED_MEDIA_TYPE, decode_video, io.BytesIO(data), T, LIMITS)
    assert "png" in error.message


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_mp4_is_undecodable(tmp_path, cut):
    data = encode("mp4", frames(40), path=tmp_path / "clip.mp4", options={"movflags": "faststart"})
    assert data[4:8] == b"ftyp" and b"moov" in data[:200], "expected the index before the media data"
    _refused(ErrorCode.UNDECODABLE_MEDIA, decode_video, io.BytesIO(data[: int(len(data) * cut)]), T, LIMITS)


def test_playlists_are_refused_without_ffmpeg_reading_the_file_they_name(tmp_path, monkeypatch):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(encode("mp4", frames(10)))
    monkeypatch.chdir(tmp_path)
    concat = b"ffconcat version 1.0\nfile secret.mp4\n"
    # The hazard is real: left to probe, FFmpeg follows the script and decodes the server's local file.
    with av.open(io.BytesIO(concat)) as container:
        assert len(list(container.decode(video=0))) == 10
    opened, real_open = [], av.open
    monkeypatch.setattr(video_module.av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    before = os.stat(secret).st_atime_ns
    hls = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nsecret.mp4\n#EXT-X-ENDLIST\n"
    for playlist in (concat, hls):
        error = _refused(ErrorCode.UNSUPPORTED_MEDIA_TYPE, decode_video, io.BytesIO(playlist), T, LIMITS)
        assert "playlist" in error.message
    assert opened == [], "a playlist reached FFmpeg"
    assert os.stat(secret).st_atime_ns == before


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", ErrorCode.BAD_REQUEST),
        (b"just some text, named clip.mp4 by its sender\n" * 4, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
        (np.random.default_rng(0).bytes(4096), ErrorCode.UNSUPPORTED_MEDIA_TYPE),
        (b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(1).bytes(4096), ErrorCode.UNDECODABLE_MEDIA),
    ],
)
def test_garbage_is_refused_with_its_own_code(data, code):
    _refused(code, decode_video, io.BytesIO(data), T, LIMITS)


def test_frames_uploads_decode_only_the_sampled_images_with_pillow():
    images = frames(10, width=48, height=96)
    files = [io.BytesIO(image_bytes(image, "PNG")) for image in images]
    media = decode_images(files, T, LIMITS)
    assert media.indices == sample_frame_indices(10, T, "segment_middle")
    assert media.frames_decoded == len(set(media.indices))
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, images[index])  # PNG is lossless


def test_frames_uploads_are_checked_file_by_file():
    ok = image_bytes(frames(1)[0])
    error = _refused(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE, decode_images, [io.BytesIO(ok), io.BytesIO(b"not an image")], T, LIMITS
    )
    assert "frames[1]" in error.message
    huge = image_bytes(frames(1, width=640, height=480)[0])
    _refused(ErrorCode.TOO_MANY_PIXELS, decode_images, [io.BytesIO(huge)], T, LIMITS)
    _refused(ErrorCode.UNDECODABLE_MEDIA, decode_images, [io.BytesIO(ok[: len(ok) // 2])], T, LIMITS)
    _refused(ErrorCode.PAYLOAD_TOO_LARGE, decode_images, [io.BytesIO(ok)] * 65, T, LIMITS)


@pytest.mark.parametrize("kind", sorted(VIDEO_FORMATS) + ["jpeg", "png"])
def test_corrupted_uploads_decode_or_fail_with_a_service_error(kind):
    """Seeded bit flips, cuts and overwritten spans: every outcome is a clip or a ServiceError, nothing else."""
    rng = np.random.default_rng(7)
    if kind in ("jpeg", "png"):
        original = image_bytes(frames(1)[0], kind.upper())
        decode = lambda data: decode_images([io.BytesIO(data)], T, LIMITS)  # noqa: E731
    else:
        original = encode(kind, frames(20, width=32, height=32), gop=5 if kind != "gif" else None)
        decode = lambda data: decode_video(io.BytesIO(data), T, LIMITS)  # noqa: E731
    for trial in range(40):
        data = bytearray(original)
        if trial % 3 == 0:
            for position in rng.integers(16, len(data), size=10):
                data[position] = rng.integers(0, 256)
        elif trial % 3 == 1:
            data = data[: rng.integers(16, len(data))]
        else:
            start = rng.integers(16, len(data))
            data[start : start + 200] = rng.bytes(200)
        try:
            media = decode(bytes(data))
        except ServiceError:
            continue
        assert len(media.frames) == T


def test_crops_of_different_sizes_make_one_tracklet():
    crops = [frames(1, width=32 + 8 * i, height=96 - 8 * i, seed=i)[0] for i in range(8)]
    media = decode_images([io.BytesIO(image_bytes(crop, "PNG")) for crop in crops], T, LIMITS)
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, crops[index])


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a frame size and holds no pixels (117 bytes of it make a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(12000, 1), (5000, 2), (1, 300), (300, 20)])
def test_thin_or_long_frames_are_refused_from_the_header(width, height):
    error = _refused(ErrorCode.BAD_FRAME_SIZE, decode_images, [io.BytesIO(png_header(width, height))], T, LIMITS)
    assert f"{width}x{height}" in error.message


def test_a_video_one_pixel_row_high_is_refused_before_decoding():
    data = encode("gif", [np.zeros((2, 300, 3), np.uint8)] * 3)
    _refused(ErrorCode.BAD_FRAME_SIZE, decode_video, io.BytesIO(data), T, LIMITS)


def test_a_png_declaring_a_huge_frame_is_too_many_pixels_without_a_traceback(caplog):
    error = _refused(ErrorCode.TOO_MANY_PIXELS, decode_images, [io.BytesIO(png_header(20000, 20000))], T, LIMITS)
    assert "20000" in error.message or "pixels" in error.message
    assert not [r for r in caplog.records if r.exc_info]


def test_mpeg_ts_from_cameras_is_decoded_like_mp4():
    data = encode(("mpegts", "libx264", "yuv420p"), frames(40, width=64, height=48, seed=5))
    reference = decode_all(data)
    media = decode_video(io.BytesIO(data), T, LIMITS)
    assert media.container == "mpegts" and media.codec == "h264" and media.total_frames == len(reference) == 40
    for index, frame in zip(media.indices, media.frames, strict=True):
        np.testing.assert_array_equal(frame, reference[index])


def test_the_codec_allow_list_is_a_setting():
    archive = encode(("avi", "msmpeg4", "yuv420p"), frames(8, width=64, height=48))
    error = _refused(ErrorCode.UNSUPPORTED_MEDIA_TYPE, decode_video, io.BytesIO(archive), T, LIMITS)
    assert "msmpeg4v3" in error.message
    admitted = replace(LIMITS, allowed_codecs=LIMITS.allowed_codecs | {"msmpeg4v3"})
    assert decode_video(io.BytesIO(archive), T, admitted).codec == "msmpeg4v3"
    only_h264 = replace(LIMITS, allowed_codecs=frozenset({"h264"}))
    _refused(ErrorCode.UNSUPPORTED_MEDIA_TYPE, decode_video, io.BytesIO(encode("webm", frames(4))), T, only_h264)


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4, b"\x1a\x45\xdf\xa3" + b"\x01" * 500],
)
def test_error_messages_show_no_memory_addresses_or_file_descriptors(data):
    error = _refused(ErrorCode.UNDECODABLE_MEDIA, decode_video, io.BytesIO(data), T, LIMITS)
    assert "0x" not in error.message and "name=" not in error.message and "<" not in error.message
    broken_png = png_header(64, 48)[:-12] + b"IDAT" + b"\x00" * 40
    error = _refused(ErrorCode.UNDECODABLE_MEDIA, decode_images, [io.BytesIO(broken_png)], T, LIMITS)
    assert "0x" not in error.message and "<" not in error.message


def test_frames_decoded_before_a_seek_miss_count_once_against_the_limit(monkeypatch):
    """After a missed seek the clip is decoded again by counting from the start: a new pass, with its own count."""
    data = encode("mp4", frames(120, width=32, height=32), gop=10)
    follow_plan = video_module._decode_steps

    def miss_at_the_end(*args):
        follow_plan(*args)  # decodes (and counts) the planned frames, then pretends the last seek missed
        raise video_module._SeekMissed()

    monkeypatch.setattr(video_module, "_decode_steps", miss_at_the_end)
    limits = replace(LIMITS, max_frames_decoded=len(decode_all(data)))
    media = decode_video(io.BytesIO(data), T, limits)
    assert media.frames_decoded > limits.max_frames_decoded  # both passes are reported ...
    assert media.indices == sample_frame_indices(120, T, "segment_middle")  # ... and the clip was served


def test_decoding_on_cuda_asks_ffmpeg_for_nvdec_and_keeps_the_frames_and_budget(monkeypatch):
    """VTFPAR_DECODE_DEVICE=cuda: the decoding passes (not the demux-only index) open with FFmpeg's CUDA hwaccel;
    sampling, frame budget and pixels are the CPU path's. Here the device is simulated: PyAV gets no hwaccel."""
    data = encode("mp4", frames(40, seed=4), gop=10)
    cpu = decode_video(io.BytesIO(data), T, LIMITS)
    opened = []
    real_open = av.open

    def recording_open(*args, hwaccel=None, **kwargs):
        opened.append(hwaccel)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", recording_open)
    cuda = decode_video(io.BytesIO(data), T, replace(LIMITS, decode_device="cuda"))
    assert opened[0] is None and len(opened) >= 2
    assert all(accel is not None and accel.options == {"primary_ctx": "1"} for accel in opened[1:])
    assert cuda.indices == cpu.indices and cuda.frames_decoded == cpu.frames_decoded
    for got, expected in zip(cuda.frames, cpu.frames, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_decode_device_the_host_lacks_is_refused_at_startup():
    limits = replace(LIMITS, decode_device="cuda")
    if torch.cuda.is_available():
        check_decode_device(limits)  # NVDEC decodes the test clip
        return
    with pytest.raises(DecodeDeviceError, match="VTFPAR_DECODE_DEVICE=cuda: cannot decode there"):
        check_decode_device(limits)


class _DeviceContextSoftwareFrames:
    """What FFmpeg gives when the CUDA device context opens but NVDEC cannot decode (the driver's decoder library
    not mounted): a codec context that says hwaccel, and frames decoded in software."""

    def __init__(self, container) -> None:
        self._container = container
        self.streams = SimpleNamespace(video=[SimpleNamespace(codec_context=SimpleNamespace(is_hwaccel=True))])

    def decode(self, _stream):
        return self._container.decode(self._container.streams.video[0])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()


def test_the_nvdec_check_refuses_frames_decoded_in_software(monkeypatch):
    probes = []

    def software_open(file, kind, limits, decoding=False, hwaccel=None):
        probes.append(hwaccel)
        file.seek(0)
        return _DeviceContextSoftwareFrames(av.open(file, format=kind.ffmpeg_format))

    monkeypatch.setattr(video_module, "_open", software_open)
    with pytest.raises(DecodeDeviceError, match="0 of them on the device .*'yuv420p'.* must include video"):
        check_decode_device(replace(LIMITS, decode_device="cuda"))
    [probe] = probes
    assert probe is not None and not probe.allow_software_fallback and probe.is_hw_owned
