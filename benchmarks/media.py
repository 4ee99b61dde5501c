"""Synthetic uploads for the service tests and benchmarks, encoded with PyAV's bundled encoders from numpy frames."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# container -> (PyAV format, encoder, pixel format)
VIDEO_FORMATS = {
    "mp4": ("mp4", "libx264", "yuv420p"),
    "webm": ("webm", "libvpx-vp9", "yuv420p"),
    "avi": ("avi", "mjpeg", "yuvj420p"),
    "gif": ("gif", "gif", "rgb8"),
}


def frames(count: int, width: int = 64, height: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Distinct, smooth-ish RGB frames (noise compresses badly and makes encodes slow)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    out = []
    for i in range(count):
        small = np.roll(base, shift=i, axis=1) // 2 + (i * 7 + seed * 31) % 128
        out.append(np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width].copy())
    return out


def encode(
    kind: str,
    images: list[np.ndarray],
    fps: int = 10,
    gop: int | None = None,
    path: Path | None = None,
    pts: list[int] | None = None,
    options: dict | None = None,
) -> bytes:
    """Encode ``images`` as ``kind`` (mp4, webm, avi, gif, or a (format, codec, pix_fmt) tuple).

    ``path`` writes through a real file (needed e.g. for mp4 faststart); ``pts`` gives variable frame timing in ms.
    """
    fmt, codec, pix_fmt = VIDEO_FORMATS[kind] if isinstance(kind, str) else kind
    target = str(path) if path else io.BytesIO()
    height, width = images[0].shape[:2]
    with av.open(target, "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes() if path else target.getvalue()


def image_bytes(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def audio_only_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def decode_all(data: bytes) -> list[np.ndarray]:
    """Every frame, decoded plainly from the start: the reference the service's sampling is checked against."""
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decode_image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
