"""Live streams end to end: a synthetic camera scene streamed from a local recording and from GStreamer's RTSP
server into the real service; its people tracked, their attributes as server-sent events; the allow-list, the
token, a camera that goes away and comes back, one that never answers, and SIGTERM."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from datetime import datetime

import httpx
import pytest
from PIL import Image

from app.api.schemas import AttributeResult, GroupResult
from app.inference import StartupError
from app.metrics import Metrics
from app.streams import StreamManager, TrackEnded

from .conftest import E2E_LIMITS
from .harness import make_settings, metric, serving
from .streams import FPS, EventsReader, IndexedDetector, RtspCamera, make_camera

pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")

STREAM_SETTINGS = dict(stream_update_s=1.0, stream_track_lost_s=0.5, stream_detection_interval=2, min_frames=1)


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    return make_camera(tmp_path_factory.mktemp("camera"))


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.1)
    return value


def _status(url: str, stream_id: str, **headers) -> dict:
    response = httpx.get(f"{url}/streams/{stream_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _delete_twice(url: str, stream_id: str) -> list[int]:
    """The statuses of two concurrent DELETEs of one stream."""

    async def both() -> list[int]:
        async with httpx.AsyncClient(base_url=url) as client:
            answers = await asyncio.gather(*(client.delete(f"/streams/{stream_id}") for _ in range(2)))
        return sorted(answer.status_code for answer in answers)

    return asyncio.run(both())


def _stored(url: str, camera: str) -> list[dict]:
    response = httpx.get(f"{url}/tracks", params={"camera": camera})
    assert response.status_code == 200, response.text
    return response.json()["tracks"]


def _check_event(data: dict, stream_id: str, names: list[str]) -> None:
    assert data["stream"] == stream_id and data["stream_name"] == "gate-3"
    assert isinstance(data["track_id"], int) and data["track_id"] >= 1
    for seen in (data["first_seen"], data["last_seen"]):
        assert isinstance(seen["stream_s"], float) and datetime.fromisoformat(seen["at"]).tzinfo is not None
    assert data["first_seen"]["stream_s"] <= data["last_seen"]["stream_s"]
    left, top, width, height = data["box"]
    assert width > 0 and height > 0
    if data["windows"]:
        # Exactly /predict's shapes: every attribute in schema order, each group's winner.
        assert [AttributeResult(**a).name for a in data["attributes"]] == names
        assert all(GroupResult(**g) for g in data["groups"])
    else:
        assert data["attributes"] is None and data["groups"] is None


def test_a_recording_streams_tracks_and_events_then_stops_at_its_end(tiny_checkpoint, camera, tmp_path):
    detector = IndexedDetector(camera)
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        **STREAM_SETTINGS,
        stream_sources=(f"file://{camera.path.parent}/",),
        data_dir=tmp_path / "data",
    )
    ended: list[TrackEnded] = []
    with serving(settings, detector=detector) as running:
        manager: StreamManager = running.service.streams
        manager.add_track_end_listener(ended.append)
        attribute_names = [a["name"] for a in httpx.get(f"{running.url}/info").json()["attributes"]]
        created = httpx.post(f"{running.url}/streams", json={"name": "gate-3", "url": camera.path.as_uri()})
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        assert created.json()["state"] in ("connecting", "running")
        events = EventsReader(f"{running.url}/streams/{stream_id}/events")
        status = _wait(lambda: (s := _status(running.url, stream_id))["state"] == "running" and s, 20, "running")
        assert status["fps_in"] >= 0 and status["detection_interval"] == 2
        picture = _first_preview(f"{running.url}/streams/{stream_id}/preview")
        assert picture.size == (256, 192)
        # The file plays at its own pace (10 fps): it ends, and the stream stops, after about its length.
        started = time.monotonic()
        _wait(lambda: _status(running.url, stream_id)["state"] == "stopped", camera.frames / FPS + 30, "its end")
        assert time.monotonic() - started > 0.5 * camera.frames / FPS
        assert _wait(events.closed.is_set, 10, "the events to close")
        final = _status(running.url, stream_id)
        # Every ended track that was answered is stored under the stream's name, with its thumbnail.
        answered = _wait(lambda: [t for t in ended if t.windows], 10, "an answered track")
        stored = _wait(
            lambda: len(found := _stored(running.url, "gate-3")) == len(answered) and found, 10, "the stored tracks"
        )
        assert sorted(t["track_id"] for t in stored) == sorted(t.track_id for t in answered)
        assert all(httpx.get(t["thumbnail"]).status_code == 200 for t in stored)
        listed = httpx.get(f"{running.url}/streams").json()["streams"]
        assert [s["id"] for s in listed] == [stream_id]
        assert httpx.delete(f"{running.url}/streams/{stream_id}").status_code == 204
        assert httpx.get(f"{running.url}/streams/{stream_id}").status_code == 404
    assert events.status == 200
    updates, ends = events.of("track_update"), events.of("track_end")
    assert updates and ends
    for data in updates + ends:
        _check_event(data, stream_id, attribute_names)
    # Every followed person ends once, and the listeners got the same tracks as the events readers.
    assert sorted(e["track_id"] for e in ends) == sorted({e["track_id"] for e in ends})
    assert sorted(t.track_id for t in ended) == sorted(e["track_id"] for e in ends)
    assert final["frames_dropped"] >= 0 and final["active_tracks"] == 0
    # The detector saw every 2nd frame, in order (none dropped here: the stub is fast).
    assert detector.shown == sorted(detector.shown) and all(i % 2 == 0 for i in detector.shown)
    with_windows = [t for t in ended if t.windows]
    assert with_windows, "no track was answered"
    for track in ended:
        assert track.stream_id == stream_id and track.stream_name == "gate-3"
        assert track.first_seen_s <= track.last_seen_s and track.first_seen_at <= track.last_seen_at
        assert track.boxes and all(len(box) == 5 for box in track.boxes)
        assert track.thumbnail is not None and track.thumbnail.dtype.name == "uint8"
        assert max(track.thumbnail.shape[:2]) <= 256 and track.thumbnail.shape[2] == 3
        assert len(track.probabilities) == (len(attribute_names) if track.windows else 0)


def test_sources_outside_the_allow_list_are_refused_before_any_connection(tiny_checkpoint, camera, tmp_path):
    settings = make_settings(
        tiny_checkpoint, **E2E_LIMITS, stream_sources=("rtsp://127.0.0.1:9/cams/", f"file://{camera.path.parent}/")
    )
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(camera.path.read_bytes())
    with serving(settings, detector=IndexedDetector(camera)) as running:
        for url in (
            "rtsp://127.0.0.1:9/other/1",  # another path
            "rtsp://127.0.0.1:99/cams/1",  # another port
            "rtsp://127.0.0.1:9/cams/../secret",  # dot segments: a server would resolve them out of the prefix
            "rtsp://127.0.0.1:9/cams/%2e%2e/secret",
            "rtsp://127.0.0.1:9.evil.example/cams/1",
            "http://127.0.0.1:9/cams/1",  # another scheme
            "concat:/etc/passwd|/etc/hosts",
            outside.as_uri(),
            f"file://{camera.path.parent}/../{camera.path.parent.name}/../elsewhere.mp4",
        ):
            response = httpx.post(f"{running.url}/streams", json={"name": "x", "url": url})
            assert response.status_code == 403, (url, response.text)
            assert response.json()["error"]["code"] == "source_not_allowed"
        for url in (
            "rtsp://127.0.0.1:9/cams/x\r\nX-Injected: 1",  # a header for the camera
            f"file://{camera.path.parent}/%00x",
            "http://[::1/x",
        ):
            response = httpx.post(f"{running.url}/streams", json={"name": "x", "url": url})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request", url
        assert httpx.get(f"{running.url}/streams").json() == {"streams": []}
        missing = httpx.post(f"{running.url}/streams", json={"name": "x", "url": "rtsp://127.0.0.1:9/cams/1", "x": 1})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "bad_request"


def test_streams_are_off_without_sources_and_need_the_token_when_one_is_set(tiny_checkpoint, camera):
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, api_token="s3cret")
    with serving(settings, detector=IndexedDetector(camera)) as running:
        body = {"name": "gate-3", "url": "rtsp://127.0.0.1:9/cam"}
        for method, path in [("POST", "/streams"), ("GET", "/streams"), ("GET", "/streams/x/events")]:
            response = httpx.request(method, f"{running.url}{path}", json=body if method == "POST" else None)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
        response = httpx.post(f"{running.url}/streams", json=body, headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 403 and "VTFPAR_STREAM_SOURCES is empty" in response.json()["error"]["message"]
        assert httpx.get(f"{running.url}/health/ready").status_code == 200  # the rest stays open


def test_a_source_that_never_answers_ends_failed_and_the_service_stays_up(tiny_checkpoint, camera):
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        stream_sources=("rtsp://viewer:pa55@127.0.0.1:9/",),  # port 9 (discard): nothing listens there
        stream_open_timeout_s=1,
        stream_retry_max_s=0.5,
        stream_give_up_s=3,
        max_streams=1,
    )
    with serving(settings, detector=IndexedDetector(camera)) as running:
        url = "rtsp://viewer:pa55@127.0.0.1:9/c"
        opened = httpx.post(f"{running.url}/streams", json={"name": "gate-3", "url": url}).json()
        stream_id = opened["id"]
        assert opened["url"] == "rtsp://***@127.0.0.1:9/c"  # the camera's credentials never leave the process
        other = {"name": "gate-4", "url": "rtsp://viewer:pa55@127.0.0.1:9/d"}
        busy = httpx.post(f"{running.url}/streams", json=other)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "too_many_streams"
        status = _wait(lambda: (s := _status(running.url, stream_id))["state"] == "failed" and s, 20, "failed")
        assert status["last_error"] and status["reconnects"] == 0
        assert "pa55" not in httpx.get(f"{running.url}/streams").text
        assert httpx.get(f"{running.url}/health/ready").status_code == 200
        # A failed stream no longer counts against VTFPAR_MAX_STREAMS.
        again = httpx.post(f"{running.url}/streams", json=other)
        assert again.status_code == 201
        # Removing it twice at once, while its threads are still stopping: one 204, one 404, never a 500.
        assert _delete_twice(running.url, again.json()["id"]) == [204, 404]


@pytest.mark.rtsp
def test_an_rtsp_camera_that_goes_away_and_comes_back_is_reconnected(tiny_checkpoint, camera, tmp_path):
    first = RtspCamera(camera.path, tmp_path / "rtsp.log")
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        **STREAM_SETTINGS,
        stream_sources=(f"rtsp://127.0.0.1:{first.port}/",),
        stream_read_timeout_s=2,
        stream_retry_max_s=1,
    )
    try:
        with serving(settings, detector=IndexedDetector(camera)) as running:
            stream_id = httpx.post(f"{running.url}/streams", json={"name": "gate-3", "url": first.url}).json()["id"]
            events = EventsReader(f"{running.url}/streams/{stream_id}/events")
            _wait(lambda: _status(running.url, stream_id)["state"] == "running", 30, "running")
            _wait(lambda: events.of("track_update"), 30, "a track update")
            first.stop()  # the camera goes away
            _wait(lambda: _status(running.url, stream_id)["state"] == "reconnecting", 30, "reconnecting")
            first = RtspCamera(camera.path, tmp_path / "rtsp.log", port=first.port)  # and comes back
            status = _wait(
                lambda: (s := _status(running.url, stream_id))["state"] == "running" and s["reconnects"] >= 1 and s,
                30,
                "running again",
            )
            assert status["last_error"]
            assert _status(running.url, stream_id)["fps_in"] > 0
            frames_in = metric(running.url, "vtfpar_stream_frames_in_total", stream=stream_id)
            reconnects = metric(running.url, "vtfpar_stream_reconnects_total", stream=stream_id)
            assert frames_in > 0 and reconnects >= 1
            # SIGTERM: the stream ends, its open tracks are sent as track_end, and the events close.
            ends_before = len(events.of("track_end"))
            open_tracks = _status(running.url, stream_id)["active_tracks"]
            running.server.handle_exit(signal.SIGTERM, None)
            assert _wait(events.closed.is_set, 15, "the events to close")
            assert len(events.of("track_end")) >= ends_before + open_tracks
    finally:
        first.stop()


def _first_preview(url: str) -> Image.Image:
    """The first JPEG of an MJPEG answer."""
    with httpx.stream("GET", url, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            start, end = data.find(b"\xff\xd8"), data.find(b"\xff\xd9")
            if start >= 0 and end > start:
                return Image.open(io.BytesIO(data[start : end + 2]))
    raise AssertionError("no picture")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.rtsp
def test_memory_stays_flat_over_a_minute_of_streaming(tiny_checkpoint, camera, tmp_path):
    rtsp = RtspCamera(camera.path, tmp_path / "rtsp.log")
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        **STREAM_SETTINGS,
        stream_sources=(f"rtsp://127.0.0.1:{rtsp.port}/",),
        stream_read_timeout_s=2,  # the server may stall at its file's end rather than close the session
        stream_retry_max_s=1,
    )
    try:
        with serving(settings, detector=IndexedDetector(camera)) as running:
            stream_id = httpx.post(f"{running.url}/streams", json={"name": "gate-3", "url": rtsp.url}).json()["id"]
            events = EventsReader(f"{running.url}/streams/{stream_id}/events")
            time.sleep(15)  # warm: the model's buffers, the decoder, the first tracks
            samples = []
            for _ in range(10):
                time.sleep(5)
                samples.append(_rss_mb())
            status = _status(running.url, stream_id)
    finally:
        rtsp.stop()
    # The camera's 10-s file ends and is reopened every 10 s: a minute covers frames, tracks and reconnections.
    described = f"status {status}, {len(events.events)} events, RTSP log: {rtsp.log.read_text()[-500:]}"
    assert len(events.of("track_end")) >= 3 and status["reconnects"] >= 2, described
    # A leaked frame (147 KB) per processed frame would grow 30 MB a minute; crops and tracks more.
    assert max(samples[5:]) - samples[0] < 25, samples


def test_the_streams_file_opens_its_streams_with_the_service_and_a_refused_one_stops_the_start(
    tiny_checkpoint, camera, tmp_path
):
    listed = tmp_path / "streams.json"
    listed.write_text(json.dumps([{"name": "gate-3", "url": camera.path.as_uri(), "update_s": 5}]))
    sources = (f"file://{camera.path.parent}/",)
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, stream_sources=sources, streams_file=listed)
    with serving(settings, detector=IndexedDetector(camera)) as running:
        [stream] = httpx.get(f"{running.url}/streams").json()["streams"]
    assert stream["name"] == "gate-3" and stream["update_s"] == 5 and stream["url"] == camera.path.as_uri()
    listed.write_text(json.dumps([{"name": "elsewhere", "url": "rtsp://127.0.0.1:9/cam"}]))
    manager = StreamManager(settings, backend=None, metrics=Metrics(), detector=IndexedDetector(camera))
    with pytest.raises(StartupError, match="stream 'elsewhere': .* not under any of the allowed stream sources"):
        asyncio.run(manager.start())


def test_a_broken_recording_fails_at_once(tiny_checkpoint, camera, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(camera.path.read_bytes()[:2000])  # the header, cut short
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, stream_sources=(f"file://{tmp_path}/",))
    with serving(settings, detector=IndexedDetector(camera)) as running:
        stream_id = httpx.post(f"{running.url}/streams", json={"name": "old", "url": broken.as_uri()}).json()["id"]
        status = _wait(lambda: (s := _status(running.url, stream_id))["state"] == "failed" and s, 10, "failed")
    assert status["last_error"] and status["reconnects"] == 0
