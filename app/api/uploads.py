"""Reading a /predict body: multipart (``video`` or ``frames`` files) or a raw ``video/*`` body.

The byte limit is enforced on the ASGI stream itself: a Content-Length above it is refused before anything is
read, and a chunked or lying body is cut off as soon as the count passes the limit. Files spool to disk past
1 MiB (Starlette's SpooledTemporaryFile), so a large upload is not held in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.types import Message, Receive

from ..errors import ErrorCode, ServiceError

RAW_CONTENT_TYPES = ("video/", "image/gif", "application/octet-stream")
SPOOL_BYTES = 1024 * 1024  # as Starlette spools multipart files


@dataclass
class Upload:
    close: Callable[[], Awaitable[None]]  # releases the spooled files once decoding is done
    video: BinaryIO | None = None
    frames: list[BinaryIO] = field(default_factory=list)
    bytes_read: int = 0


class _LimitedReceive:
    """Wraps ASGI receive, counting body bytes and failing once they pass the limit."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit, self.count = receive, limit, 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.count += len(message.get("body", b""))
            if self.count > self.limit:
                raise _too_large(self.limit)
        return message


def _too_large(limit: int) -> ServiceError:
    return ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, f"the upload is larger than {limit} bytes")


async def read_upload(request: Request, max_bytes: int, max_frames: int) -> Upload:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    receive = _LimitedReceive(request.receive, max_bytes)
    limited = Request(request.scope, receive)
    if content_type == "multipart/form-data":
        upload = await _read_multipart(limited, max_frames)
    elif content_type.startswith(RAW_CONTENT_TYPES):
        upload = await _read_raw(limited)
    else:
        raise ServiceError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {content_type or '(none)'!r} is not accepted: send multipart/form-data "
            "with a 'video' file or 'frames' image files, or a raw body with Content-Type video/*",
        )
    upload.bytes_read = receive.count
    return upload


async def _read_raw(request: Request) -> Upload:
    # Starlette's UploadFile moves writes to a thread once the spool has rolled over to disk.
    body = UploadFile(tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES), size=0)
    try:
        async for chunk in request.stream():
            await body.write(chunk)
        if body.size == 0:
            raise ServiceError(ErrorCode.BAD_REQUEST, "the request body is empty")
        await body.seek(0)
    except BaseException:
        await body.close()
        raise
    return Upload(close=body.close, video=body.file)


async def _read_multipart(request: Request, max_frames: int) -> Upload:
    parser = MultiPartParser(request.headers, request.stream(), max_files=max_frames, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        # Starlette reports every multipart problem with this one type; only its message tells them apart.
        if exc.message.startswith("Too many files"):
            raise ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE, f"more than {max_frames} files uploaded; the limit is {max_frames}"
            ) from None
        raise ServiceError(ErrorCode.BAD_REQUEST, f"malformed multipart body: {exc.message}") from None
    upload = Upload(close=form.close)
    try:
        unexpected = sorted(set(form.keys()) - {"video", "frames"})
        if unexpected:
            raise ServiceError(
                ErrorCode.BAD_REQUEST, f"unexpected form field(s) {unexpected}: send one 'video' file or 'frames' files"
            )
        videos, frames = form.getlist("video"), form.getlist("frames")
        if any(isinstance(part, str) for part in videos + frames):
            raise ServiceError(ErrorCode.BAD_REQUEST, "'video' and 'frames' must be file parts (with a filename)")
        if bool(videos) == bool(frames):
            raise ServiceError(ErrorCode.BAD_REQUEST, "send either one 'video' file or one or more 'frames' files")
        if len(videos) > 1:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"one 'video' file per request, got {len(videos)}")
        if any(part.size == 0 for part in videos + frames):
            raise ServiceError(ErrorCode.BAD_REQUEST, "an uploaded file is empty")
        upload.video = videos[0].file if videos else None
        upload.frames = [part.file for part in frames]
        return upload
    except BaseException:
        await upload.close()
        raise
