"""Bad uploads against a real server: each gets its documented status and error code, and the server keeps
answering afterwards."""

from __future__ import annotations

import errno
import os
import socket

import httpx
import pytest

from benchmarks.media import audio_only_mp4, encode, frames, image_bytes


def video(name: str, data: bytes) -> dict:
    return {"files": {"video": (name, data)}}


def frame_files(*crops: bytes) -> dict:
    return {"files": [("frames", (f"{i:04d}.jpg", crop)) for i, crop in enumerate(crops)]}


def raw(data, content_type: str = "video/mp4") -> dict:
    return {"content": data, "headers": {"Content-Type": content_type}}


CROP = image_bytes(frames(1)[0])
# name: (request builder taking tmp_path, status, code); the server's limits are conftest.E2E_LIMITS.
ERROR_CASES = {
    "empty raw body": (lambda tmp: raw(b""), 400, "bad_request"),
    "empty video part": (lambda tmp: video("c.mp4", b""), 400, "bad_request"),
    "no video or frames part": (lambda tmp: {"files": {"other": ("x.txt", b"x")}}, 400, "bad_request"),
    "video and frames": (
        lambda tmp: {"files": [("video", ("c.avi", encode("avi", frames(3)))), ("frames", ("0.jpg", CROP))]},
        400,
        "bad_request",
    ),
    "malformed multipart": (lambda tmp: raw(b"--x\r\ngarbage", "multipart/form-data"), 400, "bad_request"),
    "form-encoded body": (lambda tmp: raw(b"a=b", "application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
    "random bytes": (lambda tmp: video("c.mp4", os.urandom(5000)), 415, "unsupported_media_type"),
    "text named .mp4": (lambda tmp: video("clip.mp4", b"this is not a video\n" * 50), 415, "unsupported_media_type"),
    "codec not allowed": (
        lambda tmp: video("c.avi", encode(("avi", "png", "rgb24"), frames(3))),
        415,
        "unsupported_media_type",
    ),
    "hls playlist": (
        lambda tmp: video("p.m3u8", b"#EXTM3U\n#EXTINF:1,\n/etc/hostname\n"),
        415,
        "unsupported_media_type",
    ),
    "random bytes behind an mp4 header": (
        lambda tmp: video("c.mp4", b"\0\0\0\x18ftypmp42" + os.urandom(4000)),
        422,
        "undecodable_media",
    ),
    "truncated mp4": (lambda tmp: video("c.mp4", _truncated_mp4(tmp)), 422, "undecodable_media"),
    "audio only": (lambda tmp: video("a.m4a", audio_only_mp4()), 422, "no_video_stream"),
    "too many pixels": (
        lambda tmp: video("big.mp4", encode("mp4", frames(3, width=400, height=320))),
        422,
        "too_many_pixels",
    ),
    "too long": (
        lambda tmp: video("long.mp4", encode("mp4", frames(25, width=16, height=16), fps=1)),
        422,
        "clip_too_long",
    ),
    # 10 s of GIF (one keyframe): within the duration limit, but sampling it decodes > max_frames_decoded.
    "too many frames to decode": (
        lambda tmp: video("many.gif", encode("gif", frames(250, 16, 16), fps=25)),
        422,
        "clip_too_long",
    ),
    "a non-image frame": (lambda tmp: frame_files(CROP, b"%PDF-1.7 not an image"), 415, "unsupported_media_type"),
    "too many frame files": (lambda tmp: frame_files(*[CROP] * 17), 413, "payload_too_large"),
    "above the byte limit": (lambda tmp: video("big.mp4", b"\0" * 2_100_000), 413, "payload_too_large"),
    "above the byte limit, chunked": (lambda tmp: raw(b"\0" * 65536 for _ in range(40)), 413, "payload_too_large"),
}


def _truncated_mp4(tmp_path) -> bytes:
    data = encode("mp4", frames(40), path=tmp_path / "whole.mp4", options={"movflags": "faststart"})
    return data[: len(data) // 2]


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_gets_its_documented_error(server, tmp_path, case):
    build, status, code = ERROR_CASES[case]
    response = httpx.post(f"{server.url}/predict", timeout=30, **build(tmp_path))
    assert response.status_code == status, response.text
    assert response.json() == {"error": {"code": code, "message": response.json()["error"]["message"]}}
    assert response.json()["error"]["message"]
    assert response.headers["x-request-id"]


def test_the_byte_limit_applies_before_the_body_is_read(server):
    # Content-Length alone decides: a server that read the body first would wait for bytes never sent.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: video/mp4\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b"\0" * 1000
        )
        status_line = conn.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"


def test_an_ffconcat_upload_is_refused_without_opening_the_file_it_names(server, tmp_path, monkeypatch):
    # The named file is a FIFO: opening it for reading would block until a writer came, hanging the request,
    # and a reader waiting on it would let the non-blocking writer open below succeed.
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "secret.mp4")
    response = httpx.post(
        f"{server.url}/predict", timeout=10, files={"video": ("list.txt", b"ffconcat version 1.0\nfile secret.mp4\n")}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    with pytest.raises(OSError) as no_reader:
        os.open(tmp_path / "secret.mp4", os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO


def test_unknown_routes_and_methods_use_the_error_shape(server):
    missing = httpx.get(f"{server.url}/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{server.url}/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_the_server_still_answers_after_bad_input(server, tmp_path):
    for build, status, _ in ERROR_CASES.values():
        assert httpx.post(f"{server.url}/predict", timeout=30, **build(tmp_path)).status_code == status
    assert httpx.get(f"{server.url}/health/ready").status_code == 200
    ok = httpx.post(f"{server.url}/predict", files={"video": ("c.webm", encode("webm", frames(6)))})
    assert ok.status_code == 200
