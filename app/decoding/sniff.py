"""Decide what an upload is from its first bytes, before FFmpeg sees it.

FFmpeg's own probing happily picks the HLS or concat demuxers for text uploads, and those open other files
(an ``ffconcat`` upload naming ``secret.mp4`` makes FFmpeg read that file from the server's working
directory). So only the signatures below are accepted, and the matching demuxer is forced with ``format=``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorCode, ServiceError

# Enough for three MPEG-TS packets (188 bytes, or 192 with the M2TS timestamp prefix).
SNIFF_BYTES = 400


@dataclass(frozen=True)
class MediaKind:
    name: str  # what /info and responses call it
    ffmpeg_format: str | None  # the demuxer forced on PyAV; None for images (decoded with Pillow)


MP4 = MediaKind("mp4", "mp4")  # FFmpeg's "mov,mp4,m4a,3gp,3g2,mj2" demuxer: mp4 and QuickTime mov
MATROSKA = MediaKind("matroska", "matroska")  # mkv and webm
AVI = MediaKind("avi", "avi")
# What cameras and recorders write. FFmpeg's mpegts demuxer reads the upload alone: no playlist, no other files.
MPEGTS = MediaKind("mpegts", "mpegts")
GIF = MediaKind("gif", "gif")
JPEG = MediaKind("jpeg", None)
PNG = MediaKind("png", None)

VIDEO_KINDS = (MP4, MATROSKA, AVI, GIF, MPEGTS)
IMAGE_KINDS = (JPEG, PNG)
# ISO-BMFF / QuickTime files start with a box size then one of these box types.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free")
_PLAYLISTS = {b"#EXTM3U": "an HLS playlist", b"ffconcat": "an ffconcat script"}


def sniff(head: bytes) -> MediaKind | None:
    """The kind whose signature ``head`` starts with, or None."""
    if head[4:8] in _MP4_BOXES:
        return MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return AVI
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if _ts_sync(head, 0, 188) or _ts_sync(head, 4, 192):
        return MPEGTS
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    return None


def _ts_sync(head: bytes, first: int, packet: int) -> bool:
    """Three transport-stream packets in a row, each starting with the sync byte 0x47."""
    positions = [first + i * packet for i in range(3)]
    return len(head) > positions[-1] and all(head[p] == 0x47 for p in positions)


def sniff_video(head: bytes) -> MediaKind:
    kind = sniff(head)
    if kind in VIDEO_KINDS:
        return kind
    raise ServiceError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE, _refusal(head, kind, "a video (mp4/mov, webm/mkv, avi, gif or mpeg-ts)")
    )


def sniff_image(head: bytes, what: str) -> MediaKind:
    kind = sniff(head)
    if kind in IMAGE_KINDS:
        return kind
    raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"{what}: " + _refusal(head, kind, "a JPEG or PNG image"))


def _refusal(head: bytes, kind: MediaKind | None, expected: str) -> str:
    for signature, description in _PLAYLISTS.items():
        if head.lstrip().startswith(signature):
            return f"the upload is {description}; playlists are refused because they make FFmpeg open other files"
    if kind is not None:
        return f"expected {expected}, got {kind.name}"
    return f"unrecognised format: expected {expected}"
