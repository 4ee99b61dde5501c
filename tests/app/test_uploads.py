"""Reading /predict bodies: slow senders, memory per request, and clients that leave mid-upload."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import time
import tracemalloc

import httpx
import pytest
from starlette.requests import Request

from app.api.errors import STATUS
from app.api.uploads import MAX_PART_HEADER_BYTES, SPOOL_BYTES, read_upload
from app.errors import ErrorCode, ServiceError
from benchmarks.media import encode, frames

from .harness import make_settings, metric, serving

CLIP = encode("avi", frames(5, width=32, height=32))
# Headers and the first bytes of bodies that promise 100,000 bytes.
RAW_HEAD = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n"
PARTIAL_RAW = RAW_HEAD + bytes(10)
PARTIAL_MULTIPART = (
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
    b"Content-Length: 100000\r\n\r\n"
    b'--xx\r\nContent-Disposition: form-data; name="video"; filename="c.mp4"\r\n\r\n' + bytes(1000)
)


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one response on ``conn``, read until the server closes it."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def test_slow_senders_hold_upload_slots_only_and_get_408(tiny_checkpoint):
    settings = make_settings(
        tiny_checkpoint, max_concurrent_requests=2, max_concurrent_uploads=3, upload_timeout_s=2, warmup=False
    )
    with serving(settings) as running:
        url = running.url
        slow = [connect(url), connect(url)]  # as many slow senders as there are request slots
        for conn in slow:
            conn.sendall(PARTIAL_RAW)
        started = time.monotonic()
        wait_until(lambda: metric(url, "vtfpar_uploads_in_flight") == 2)

        # A real request still gets its answer: slow bodies do not count against max_concurrent_requests.
        assert httpx.post(f"{url}/predict", files={"video": ("c.avi", CLIP)}, timeout=30).status_code == 200

        # Bodies in progress are bounded on their own: with every upload slot taken, the next request waits for none.
        slow.append(connect(url))
        slow[-1].sendall(PARTIAL_RAW)
        wait_until(lambda: metric(url, "vtfpar_uploads_in_flight") == 3)
        refused = httpx.post(f"{url}/predict", files={"video": ("c.avi", CLIP)}, timeout=30)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "overloaded"

        for conn in slow:
            with conn:
                status, headers, body = read_response(conn)  # returns once the server closes the connection
            assert status == 408 and body["error"]["code"] == "upload_timeout", body
            assert headers["connection"] == "close" and headers["x-request-id"]
        assert 2 <= time.monotonic() - started < 10
        assert metric(url, "vtfpar_rejections_total", reason="upload_timeout") == 3
        assert metric(url, "vtfpar_uploads_in_flight") == 0 and metric(url, "vtfpar_requests_in_flight") == 0
        assert httpx.post(f"{url}/predict", files={"video": ("c.avi", CLIP)}, timeout=30).status_code == 200


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[str, bytes]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, (name, data) in enumerate(parts)
    )
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


async def _read(content_type: str, body: bytes, chunk: int = 65536, max_frames: int = 1000):
    """read_upload on a request whose body arrives in ``chunk``-byte messages, as uvicorn delivers it."""
    offsets = iter(range(0, len(body), chunk))

    async def receive():
        start = next(offsets)
        return {"type": "http.request", "body": body[start : start + chunk], "more_body": start + chunk < len(body)}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
    return await read_upload(Request(scope, receive), len(body), max_frames, timeout_s=30)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_small_parts_stay_within_the_memory_bound_of_a_request():
    # The case, scaled down: 64 parts of 62 KiB (each below the 1 MiB a per-part spool would keep in RAM).
    parts = [("frames", bytes([i]) * (62 * 1024)) for i in range(64)]
    content_type, body = _multipart(parts)
    fds = _open_fds()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        upload = asyncio.run(_read(content_type, body))
        held, peak = (value - baseline for value in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    try:
        assert held < 256 * 1024, f"{held} bytes stay in memory after parsing"
        assert peak < SPOOL_BYTES + 512 * 1024, f"{peak} bytes in memory at the peak"
        assert _open_fds() - fds <= 1, "one temporary file per request, not one per part"
        assert [frame.read() for frame in upload.frames] == [data for _, data in parts]
    finally:
        asyncio.run(upload.close())


@pytest.mark.parametrize("part_bytes", [300, 200_000], ids=["in memory", "on disk"])
def test_each_part_reads_back_exactly_as_a_seekable_file(part_bytes):
    parts = [("frames", os.urandom(part_bytes)) for _ in range(7)]
    content_type, body = _multipart(parts)
    upload = asyncio.run(_read(content_type, body, chunk=1000))  # boundaries split across chunks
    try:
        assert upload.bytes_read == len(body) and upload.video is None
        for frame, (_, data) in zip(upload.frames, parts, strict=True):
            assert frame.read(10) == data[:10] and frame.tell() == 10
            assert frame.seek(-5, io.SEEK_END) == part_bytes - 5 and frame.read() == data[-5:]
            assert frame.read() == b""
            frame.seek(0)
            assert frame.read() == data
    finally:
        asyncio.run(upload.close())


def test_a_part_without_a_filename_is_still_a_file(server):
    # RFC 7578 makes the filename optional (curl -F 'video=<clip.avi' sends none).
    response = httpx.post(f"{server.url}/predict", files={"video": (None, CLIP)}, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("head", [PARTIAL_RAW, PARTIAL_MULTIPART], ids=["raw", "multipart"])
def test_a_client_that_leaves_mid_upload_is_a_499_without_a_traceback(server, caplog, head):
    before = metric(server.url, "vtfpar_requests_total", endpoint="/predict", status="499")
    with caplog.at_level(logging.INFO), connect(server.url) as conn:
        conn.sendall(head)
        wait_until(lambda: metric(server.url, "vtfpar_uploads_in_flight") == 1)
    wait_until(lambda: metric(server.url, "vtfpar_requests_total", endpoint="/predict", status="499") == before + 1)
    assert metric(server.url, "vtfpar_uploads_in_flight") == 0
    assert metric(server.url, "vtfpar_rejections_total", reason="client_disconnected") >= 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def _header_part(header_lines: list[bytes], boundary: str = "b0undary") -> tuple[str, bytes]:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="c.avi"\r\n'.encode()
    headers = b"".join(line + b"\r\n" for line in header_lines) + b"\r\n"
    body = head + headers + CLIP + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _refusal_and_bytes_read(content_type: str, body: bytes, chunk: int = 65536) -> tuple[ServiceError, int]:
    """read_upload's refusal of a body arriving in ``chunk``-byte messages, and how many bytes it had read."""
    sent = []

    async def receive():
        start = len(sent) * chunk
        sent.append(start)
        return {"type": "http.request", "body": body[start : start + chunk], "more_body": start + chunk < len(body)}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
    with pytest.raises(ServiceError) as refused:
        asyncio.run(read_upload(Request(scope, receive), len(body), 10, timeout_s=30))
    return refused.value, len(sent) * chunk


def test_a_4_mb_part_header_is_refused_at_once():
    """Refused within the first chunk that passes the bound, not after the 4 MB were parsed."""
    content_type, body = _header_part([b"X-Padding: " + b"a" * (4 * 1024 * 1024)])
    error, read = _refusal_and_bytes_read(content_type, body)
    assert error.code in (ErrorCode.BAD_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE), error
    assert "header" in error.message.lower(), error.message
    assert read <= 2 * 65536, f"{read} bytes of a {len(body)}-byte body read before the refusal"


def test_the_headers_of_a_part_are_bounded_by_the_service_not_only_by_the_parser():
    """Lines each within python-multipart's per-line limit, together beyond the service's per-part bound."""
    lines = [f"X-Note-{i}: ".encode() + b"n" * 3000 for i in range(4)]
    error, _ = _refusal_and_bytes_read(*_header_part(lines))
    assert error.code == ErrorCode.PAYLOAD_TOO_LARGE and f"{MAX_PART_HEADER_BYTES} bytes" in error.message
    assert STATUS[error.code] == 413
