"""Where a stream comes from: the allow-list check, done before any connection, and how FFmpeg opens each kind of
source.

A stream URL makes the server open a connection, so only URLs under one of ``VTFPAR_STREAM_SOURCES``' prefixes are
accepted. FFmpeg gets a ``protocol_whitelist`` of exactly what the URL's scheme needs (never ``file``, ``concat``,
``subfile`` or ``data`` for a network source: crafted playlists read local files through them) and
``max_redirects=0`` over HTTP, so that no redirect leaves the prefix, and a ``format_whitelist`` without HLS or
DASH (whose playlists name segments on any host, fetched with redirects followed) unless the URL lies under one of
``VTFPAR_STREAM_PLAYLIST_SOURCES``. Local files must resolve (symlinks followed) inside an allowed ``file://``
directory, and only video containers are probed in them. A URL with a character outside printable ASCII (CR/LF
would reach an RTSP camera or an HTTP server as a header) is refused before anything else, and credentials in a
URL never leave the process: ``Source.shown`` and ``Source.redact`` hide them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

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
# What each network scheme's source may be demuxed as: never a playlist or concat list unless opted in.
NETWORK_FORMATS = {
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "http": FILE_FORMATS,
    "https": FILE_FORMATS,
    "rtmp": "flv,live_flv",
    "rtmps": "flv,live_flv",
}
PLAYLIST_FORMATS = "hls,dash"  # only under VTFPAR_STREAM_PLAYLIST_SOURCES
HIDDEN = "***"


@dataclass(frozen=True)
class Source:
    shown: str  # the URL as the status and logs show it: credentials hidden
    target: str  # what FFmpeg opens: the URL, or a local file's resolved path
    scheme: str
    options: dict[str, str]  # FFmpeg options for av.open
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the URL's user information, raw and decoded

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"

    def redact(self, text: str) -> str:
        """``text`` (an error message, which FFmpeg's name the URL) with the URL's credentials hidden."""
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return text


def check_source(
    url: str, allowed: tuple[str, ...], rtsp_transport: str = "tcp", playlists: tuple[str, ...] = ()
) -> Source:
    """The source of ``url`` if it lies under one of the ``allowed`` prefixes, else ``source_not_allowed``; a
    malformed URL is a ``bad_request``. HLS and DASH are opened only under one of ``playlists``."""
    split = _parse(url)
    scheme = split.scheme.lower()
    if scheme not in PROTOCOLS:
        raise ServiceError(
            ErrorCode.SOURCE_NOT_ALLOWED,
            f"unsupported stream URL scheme {scheme or '(none)'!r}: use one of {', '.join(sorted(PROTOCOLS))}",
        )
    if scheme == "file":
        return _file_source(url, split, allowed)
    secrets = _secrets(split)
    shown = _hidden(url, secrets)
    if not any(_under(split, prefix) for prefix in allowed):
        raise ServiceError(ErrorCode.SOURCE_NOT_ALLOWED, _refusal(shown, allowed))
    formats = NETWORK_FORMATS[scheme]
    if any(_under(split, prefix) for prefix in playlists):
        formats += "," + PLAYLIST_FORMATS
    options = {"protocol_whitelist": PROTOCOLS[scheme], "format_whitelist": formats}
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = rtsp_transport
    if scheme in ("http", "https"):
        options |= {"max_redirects": "0", "reconnect": "1", "reconnect_streamed": "1", "reconnect_delay_max": "5"}
    return Source(shown, url, scheme, options, secrets)


def _parse(url: str) -> SplitResult:
    """``url`` split, or ``bad_request``: a character outside printable ASCII (CR/LF become headers on the wire,
    and urlsplit silently drops them) or a URL urlsplit cannot read (``http://[::1/x``)."""
    bad = next((c for c in url if not "!" <= c <= "~"), None)
    if bad is not None:
        raise ServiceError(ErrorCode.BAD_REQUEST, f"the stream URL has the character {bad!r}: printable ASCII only")
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, f"the stream URL cannot be read: {exc}") from None


def _secrets(split: SplitResult) -> tuple[str, ...]:
    userinfo = split.netloc.rpartition("@")[0]
    if not userinfo:
        return ()
    return tuple(dict.fromkeys(s for s in (userinfo, unquote(userinfo)) if s))


def _hidden(url: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        url = url.replace(secret + "@", HIDDEN + "@")
    return url


def _under(split: SplitResult, prefix: str) -> bool:
    """``split`` starts with ``prefix``, compared on the scheme and host case-insensitively; a prefix naming a host
    alone (``rtsp://cam``) must not admit another host (``rtsp://cam.evil``)."""
    try:
        allowed = urlsplit(prefix)
    except ValueError:
        return False
    if (split.scheme.lower(), split.netloc.lower()) != (allowed.scheme.lower(), allowed.netloc.lower()):
        return False
    if any(segment in (".", "..") for segment in unquote(split.path).split("/")):
        return False  # the server would resolve them, perhaps out of the prefix
    return split.path.startswith(allowed.path) and (
        allowed.path.endswith("/") or split.path == allowed.path or split.path[len(allowed.path) :].startswith("/")
    )


def _file_source(url: str, split: SplitResult, allowed: tuple[str, ...]) -> Source:
    if split.netloc not in ("", "localhost") or split.query or split.fragment:
        raise ServiceError(ErrorCode.SOURCE_NOT_ALLOWED, f"{url}: a file URL is file:///absolute/path")
    decoded = unquote(split.path)
    bad = next((c for c in decoded if c < " " or c == "\x7f"), None)
    if bad is not None:  # a NUL makes the path unusable for the operating system (and os.stat raises)
        raise ServiceError(ErrorCode.BAD_REQUEST, f"{url}: the decoded path has the character {bad!r}")
    path = Path(decoded).resolve()
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
