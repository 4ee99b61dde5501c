"""Where a stream comes from: the allow-list check, done before any connection, and how FFmpeg opens each kind of
source.

A stream URL makes the server open a connection, so only URLs under one of ``VTFPAR_STREAM_SOURCES``' prefixes are
accepted. FFmpeg gets a ``protocol_whitelist`` of exactly what the URL's scheme needs (never ``file``, ``concat``,
``subfile`` or ``data`` for a network source: crafted playlists read local files through them) and
``max_redirects=0`` over HTTP, so that no redirect leaves the prefix. Local files must resolve (symlinks followed)
inside an allowed ``file://`` directory, and only video containers are probed in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ErrorCode, ServiceError

# What each scheme's FFmpeg demuxer may open. RTSP interleaves RTP over its TCP connection (rtsp_transport=tcp);
# udp stays allowed for cameras asked for UDP.
PROTOCOLS = {
    "rtsp": "rtp,udp,tcp",
    "rtsps": "rtp,udp,tcp,tls",
    "http": "http,tcp,crypto",
    "https": "https,http,tcp,tls,crypto",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
    "file": "file",
}
# Containers a local recording may be (FFmpeg demuxer names); not hls or concat, which open other files.
FILE_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,h264,hevc"


@dataclass(frozen=True)
class Source:
    url: str  # what the client sent (shown in the status)
    target: str  # what FFmpeg opens: the URL, or a local file's resolved path
    scheme: str
    options: dict[str, str]  # FFmpeg options for av.open

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"


def check_source(url: str, allowed: tuple[str, ...], rtsp_transport: str = "tcp") -> Source:
    """The source of ``url`` if it lies under one of the ``allowed`` prefixes, else ``source_not_allowed``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in PROTOCOLS:
        raise ServiceError(
            ErrorCode.SOURCE_NOT_ALLOWED,
            f"unsupported stream URL scheme {scheme or '(none)'!r}: use one of {', '.join(sorted(PROTOCOLS))}",
        )
    if scheme == "file":
        return _file_source(url, allowed)
    if not any(_under(url, prefix) for prefix in allowed):
        raise ServiceError(ErrorCode.SOURCE_NOT_ALLOWED, _refusal(url, allowed))
    options = {"protocol_whitelist": PROTOCOLS[scheme]}
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = rtsp_transport
    if scheme in ("http", "https"):
        options |= {"max_redirects": "0", "reconnect": "1", "reconnect_streamed": "1", "reconnect_delay_max": "5"}
    return Source(url, url, scheme, options)


def _under(url: str, prefix: str) -> bool:
    """``url`` starts with ``prefix``, compared on the scheme and host case-insensitively; a prefix naming a host
    alone (``rtsp://cam``) must not admit another host (``rtsp://cam.evil``)."""
    split, allowed = urlsplit(url), urlsplit(prefix)
    if (split.scheme.lower(), split.netloc.lower()) != (allowed.scheme.lower(), allowed.netloc.lower()):
        return False
    if any(segment in (".", "..") for segment in unquote(split.path).split("/")):
        return False  # the server would resolve them, perhaps out of the prefix
    return split.path.startswith(allowed.path) and (
        allowed.path.endswith("/") or split.path == allowed.path or split.path[len(allowed.path) :].startswith("/")
    )


def _file_source(url: str, allowed: tuple[str, ...]) -> Source:
    split = urlsplit(url)
    if split.netloc not in ("", "localhost") or split.query or split.fragment:
        raise ServiceError(ErrorCode.SOURCE_NOT_ALLOWED, f"{url}: a file URL is file:///absolute/path")
    path = Path(unquote(split.path)).resolve()
    directories = [Path(unquote(urlsplit(p).path)).resolve() for p in allowed if urlsplit(p).scheme == "file"]
    if not any(path.is_relative_to(directory) for directory in directories):
        raise ServiceError(ErrorCode.SOURCE_NOT_ALLOWED, _refusal(url, allowed))
    if not path.is_file():
        raise ServiceError(ErrorCode.NOT_FOUND, f"{url}: no such file")
    return Source(url, str(path), "file", {"protocol_whitelist": "file", "format_whitelist": FILE_FORMATS})


def _refusal(url: str, allowed: tuple[str, ...]) -> str:
    if not allowed:
        return "streams are off on this server (VTFPAR_STREAM_SOURCES is empty)"
    return f"{url} is not under any of the allowed stream sources (VTFPAR_STREAM_SOURCES)"
