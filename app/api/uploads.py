"""Reading a request body: multipart files (``video`` or ``frames`` for /predict, ``video`` and ``tracks`` for
/predict/tracks, each endpoint's :class:`Form`) or a raw video body.

The body is read from the ASGI stream under three bounds: the byte limit (a Content-Length above it is refused
before anything is read, a chunked or lying body is cut off as soon as the count passes it), a deadline (a body
not complete by then gets ``upload_timeout``), and a memory bound. Every upload's file bytes go into one
:class:`BodySpool` per request: the first ``SPOOL_BYTES`` in memory, the rest in one temporary file. The files
of a multipart body are sections of that spool, so a request holds at most ``SPOOL_BYTES`` of file data, one part
header and one received chunk in memory, and one file descriptor, however many parts it has.

Multipart is parsed with python-multipart's streaming parser directly rather than Starlette's ``MultiPartParser``:
that one gives every file part its own spooled file holding up to 1 MiB in memory (1,000 parts of 62 KiB keep
64 MiB per request, and 1,000 file descriptors once larger) and keeps every part's headers.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, cast

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import Receive

from ..decoding.sniff import VIDEO_KINDS
from ..errors import ErrorCode, ServiceError

if TYPE_CHECKING:  # python-multipart defines its callback type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

SPOOL_BYTES = 1024 * 1024  # file bytes of one request kept in memory; the rest go to a temporary file
# Header bytes of one part: a browser or curl sends about 150. Bounded here as well as by python-multipart's own
# per-line and per-part limits (since 0.0.27), so that neither a parser release nor its defaults decide it.
MAX_PART_HEADER_BYTES = 8 * 1024
# Content types a raw body may have, by the container they usually name (the container is sniffed from the
# bytes all the same). application/octet-stream is for clients that do not know.
CONTAINER_CONTENT_TYPES = {
    "mp4": ("video/mp4", "video/quicktime"),
    "matroska": ("video/webm", "video/x-matroska"),
    "avi": ("video/x-msvideo", "video/avi"),
    "gif": ("image/gif",),
    "mpegts": ("video/mp2t",),
}
RAW_CONTENT_TYPES = (
    *(content_type for kind in VIDEO_KINDS for content_type in CONTAINER_CONTENT_TYPES[kind.name]),
    "application/octet-stream",
)


@dataclass(frozen=True)
class Form:
    """The multipart file fields an endpoint takes: each accepted combination of fields, which fields hold one
    file at most, and whether a raw video body will do instead."""

    combinations: tuple[frozenset[str], ...]
    single: frozenset[str]
    raw_video: bool
    expected: str  # what to send, as error messages say it

    @property
    def fields(self) -> frozenset[str]:
        return frozenset().union(*self.combinations)


PREDICT_FORM = Form(
    combinations=(frozenset({"video"}), frozenset({"frames"})),
    single=frozenset({"video"}),
    raw_video=True,
    expected="either one 'video' file or one or more 'frames' files",
)
TRACKS_FORM = Form(
    combinations=(frozenset({"video", "tracks"}),),
    single=frozenset({"video", "tracks"}),
    raw_video=False,
    expected="one 'video' file and one 'tracks' file (MOT text or JSON)",
)
SCENE_FORM = Form(
    combinations=(frozenset({"video"}),), single=frozenset({"video"}), raw_video=True, expected="one 'video' file"
)


class BodySpool:
    """The file bytes of one request body, written once and then read as sections: in memory up to
    ``memory_bytes``, after that all of them in one temporary file."""

    def __init__(self, memory_bytes: int = SPOOL_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self.size = 0
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        # Decoding reads on a pool thread; closing under the same lock means a read never meets a closed (and
        # possibly reused) file descriptor.
        self._lock = threading.Lock()

    async def write(self, data: bytes) -> None:
        if self._file is None and len(self._memory) + len(data) > self.memory_bytes:
            self._file = tempfile.TemporaryFile()
            self._memory, held = bytearray(), self._memory
            await asyncio.to_thread(self._file.write, held)
        if self._file is None:
            self._memory += data
        else:
            # Off the event loop, as Starlette writes its spooled files once they are on disk.
            await asyncio.to_thread(self._file.write, data)
        self.size += len(data)

    def section(self, offset: int, size: int) -> BinaryIO:
        if self._file is not None:
            self._file.flush()
        # Unbuffered: a buffer per frame file would be memory per part. A raw stream is all a BinaryIO reader
        # here uses (read, seek, tell).
        return cast(BinaryIO, _Section(self, offset, size))

    def read_at(self, offset: int, buffer: memoryview) -> int:
        with self._lock:
            if self._file is None:
                chunk = self._memory[offset : offset + len(buffer)]
                buffer[: len(chunk)] = chunk
                return len(chunk)
            return os.preadv(self._file.fileno(), [buffer], offset)  # fileno() raises once closed

    def close(self) -> None:
        with self._lock:
            self._memory = bytearray()
            if self._file is not None:
                self._file.close()


class _Section(io.RawIOBase):
    """A read-only, seekable window on a spool; positioned reads, so sections never share a file position."""

    def __init__(self, spool: BodySpool, offset: int, size: int) -> None:
        self.spool, self.offset, self.size, self.position = spool, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wanted = max(0, min(len(buffer), self.size - self.position))
        if wanted == 0:
            return 0
        count = self.spool.read_at(self.offset + self.position, memoryview(buffer).cast("B")[:wanted])
        self.position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position


@dataclass
class Upload:
    spool: BodySpool
    video: BinaryIO | None = None
    frames: list[BinaryIO] = field(default_factory=list)
    tracks: BinaryIO | None = None
    bytes_read: int = 0

    async def close(self) -> None:
        """Releases the spooled body once decoding is done."""
        self.spool.close()


class _Body:
    """The request body as an async iterator of chunks: counted against the byte limit, and a disconnect
    becomes ``client_disconnected``."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit, self.count = receive, limit, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the client disconnected during the upload")
            chunk = message.get("body", b"")
            self.count += len(chunk)
            if self.count > self.limit:
                raise _too_large(self.limit)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def _too_large(limit: int) -> ServiceError:
    return ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, f"the upload is larger than {limit} bytes")


async def read_upload(
    request: Request, max_bytes: int, max_frames: int, timeout_s: float, form: Form = PREDICT_FORM
) -> Upload:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data" and not (form.raw_video and content_type in RAW_CONTENT_TYPES):
        raw = f", or a raw body with one of {', '.join(RAW_CONTENT_TYPES)}" if form.raw_video else ""
        raise ServiceError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {content_type or '(none)'!r} is not accepted: send multipart/form-data with "
            f"{form.expected}{raw}",
        )
    body = _Body(request.receive, max_bytes)
    upload = Upload(BodySpool())
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            if content_type == "multipart/form-data":
                await _read_multipart(request.headers.get("content-type", ""), body, upload, max_frames, form)
            else:
                await _read_raw(body, upload)
    except BaseException as exc:
        upload.spool.close()
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise ServiceError(
                ErrorCode.UPLOAD_TIMEOUT, f"the request body was not complete after {timeout_s:g} s"
            ) from None
        raise
    upload.bytes_read = body.count
    return upload


async def _read_raw(body: _Body, upload: Upload) -> None:
    async for chunk in body:
        await upload.spool.write(chunk)
    if upload.spool.size == 0:
        raise ServiceError(ErrorCode.BAD_REQUEST, "the request body is empty")
    upload.video = upload.spool.section(0, upload.spool.size)


@dataclass
class _Part:
    name: str
    offset: int
    size: int = 0


class _MultipartReader:
    """python-multipart callbacks that keep only what the form needs: each file part's field name and where its
    bytes lie in the spool. Any other part is refused as soon as its headers are read."""

    def __init__(self, max_files: int, form: Form) -> None:
        self.max_files = max_files
        self.form = form
        self.parts: list[_Part] = []
        self.pending: list[bytes] = []  # file bytes parsed from the current chunk, not yet in the spool
        self.offset = 0  # spool offset of the next file byte
        self.complete = False
        self._header_name, self._header_value, self._disposition = b"", b"", b""
        self._header_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_value += data[start:end]

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"a multipart part's headers are larger than {MAX_PART_HEADER_BYTES} bytes",
            )

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")
        if name not in self.form.fields:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"unexpected form field {name!r}: send {self.form.expected}")
        if len(self.parts) == self.max_files:
            raise ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE, f"more than {self.max_files} files uploaded; the limit is {self.max_files}"
            )
        self.parts.append(_Part(name, self.offset))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.pending.append(data[start:end])
        self.offset += end - start

    def on_part_end(self) -> None:
        part = self.parts[-1]
        part.size = self.offset - part.offset

    def on_end(self) -> None:
        self.complete = True


async def _read_multipart(content_type: str, body: _Body, upload: Upload, max_files: int, form: Form) -> None:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServiceError(ErrorCode.BAD_REQUEST, "malformed multipart body: no boundary in Content-Type")
    reader = _MultipartReader(max_files, form)
    try:
        parser = MultipartParser(
            boundary, reader.callbacks(), max_header_count=8, max_header_size=MAX_PART_HEADER_BYTES
        )
        async for chunk in body:
            parser.write(chunk)
            for data in reader.pending:
                await upload.spool.write(data)
            reader.pending.clear()
    except FormParserError as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, f"malformed multipart body: {exc}") from None
    if not reader.complete:
        raise ServiceError(ErrorCode.BAD_REQUEST, "malformed multipart body: it ends before its closing boundary")
    by_field: dict[str, list[_Part]] = {}
    for part in reader.parts:
        by_field.setdefault(part.name, []).append(part)
    if frozenset(by_field) not in form.combinations:
        raise ServiceError(ErrorCode.BAD_REQUEST, f"send {form.expected}")
    for name in sorted(form.single & by_field.keys()):
        if len(by_field[name]) > 1:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"one {name!r} file per request, got {len(by_field[name])}")
    if any(part.size == 0 for part in reader.parts):
        raise ServiceError(ErrorCode.BAD_REQUEST, "an uploaded file is empty")

    def section(name: str) -> BinaryIO | None:
        parts = by_field.get(name)
        return upload.spool.section(parts[0].offset, parts[0].size) if parts else None

    upload.video, upload.tracks = section("video"), section("tracks")
    upload.frames = [upload.spool.section(part.offset, part.size) for part in by_field.get("frames", [])]
