"""The camera path's review findings (issue 26, part 3), each at the level that shows it: URLs that must not reach
FFmpeg, credentials that must not leave the process, a reader that must not die or hang, a track whose end must
come last, events of a fixed size, the lock not held while crops are prepared, and the manager's bookkeeping
(concurrent removal, shutting down, ended streams, the streams file)."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import pickle
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import av
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from app.batching import BatchResult
from app.errors import ErrorCode, ServiceError
from app.inference import StartupError
from app.metrics import Metrics, StreamMetrics
from app.streams import StreamManager, StreamSpec
from app.streams.reader import MAX_DOUBLINGS, Backoff, Frame, FrameSlot, Reader, ReaderConfig
from app.streams.sources import check_source
from app.streams.stream import Stream, StreamConfig
from app.streams.tracks import MAX_BOXES
from model import Preprocess

from .harness import make_settings

pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")

ALLOWED = ("rtsp://cam.local:554/live/", "https://video.example.com/hls/")
PREPROCESS = Preprocess(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), padding="centre")


# URLs ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam.local:554/live/x\r\nX-Injected: 1",  # urlsplit drops the CR/LF; FFmpeg would send them
        "rtsp://cam.local:554/live/x\nX-Injected: 1",
        "rtsp://cam.local:554/live/x\x00",
        "rtsp://cam.local:554/live/caf\u00e9",
        "http://[::1/x",  # urlsplit raises
        "file:///d/%00x",  # a NUL once decoded
    ],
)
def test_urls_that_cannot_be_sent_as_they_are_get_a_400_before_anything_opens(url):
    with pytest.raises(ServiceError) as refused:
        check_source(url, (*ALLOWED, "file:///d/", "http://[::1]/"))
    assert refused.value.code == ErrorCode.BAD_REQUEST


def test_a_stream_body_with_a_control_character_in_its_url_is_invalid():
    with pytest.raises(ValueError):
        StreamSpec(name="x", url="rtsp://cam.local:554/live/x\r\nX-Injected: 1")


def test_network_sources_are_never_playlists_unless_their_prefix_opts_in():
    for url in ("rtsp://cam.local:554/live/1", "https://video.example.com/hls/a.m3u8"):
        formats = check_source(url, ALLOWED).options["format_whitelist"].split(",")
        assert "hls" not in formats and "dash" not in formats, url
    opted = check_source("https://video.example.com/hls/a.m3u8", ALLOWED, playlists=("https://video.example.com/hls/",))
    assert {"hls", "dash"} <= set(opted.options["format_whitelist"].split(","))


@pytest.fixture
def playlist_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving an HLS playlist of one MPEG-TS segment."""
    with av.open(str(tmp_path / "a.ts"), "w", format="mpegts") as container:
        video = container.add_stream("mpeg2video", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    (tmp_path / "live.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\na.ts\n#EXT-X-ENDLIST\n"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_ffmpeg_refuses_an_hls_playlist_outside_the_playlist_prefixes(playlist_server):
    url = playlist_server + "live.m3u8"
    refused = check_source(url, (playlist_server,))
    with pytest.raises(av.FFmpegError):
        av.open(refused.target, options=dict(refused.options), timeout=5).close()
    opted = check_source(url, (playlist_server,), playlists=(playlist_server,))
    with av.open(opted.target, options=dict(opted.options), timeout=5) as container:
        assert container.format.name == "hls"


# The reader ------------------------------------------------------------------------------------------------------
def _reader(source, opener, stop, ended=None, **config) -> Reader:
    values = dict(
        detection_interval=1,
        open_timeout_s=1.0,
        read_timeout_s=0.3,
        retry_first_s=0.5,
        retry_max_s=0.001,
        give_up_s=1e9,
        decode_threads=1,
    )
    series = StreamMetrics(CollectorRegistry()).labels("s")
    on_end = ended.set if ended is not None else lambda: None
    clock = SimpleNamespace(monotonic=time.monotonic, now=lambda: datetime.now(UTC))
    return Reader(source, ReaderConfig(**values | config), FrameSlot(), stop, series, on_end, clock, opener)


def test_the_backoff_survives_thousands_of_failed_attempts():
    backoff = Backoff(first_s=0.5, max_s=30.0, give_up_s=1e9, last_frame=0.0, attempt=1_100)
    assert 15.0 <= backoff.next_wait(1.0) <= 30.0  # 0.5 * 2**1100 overflows a float
    assert backoff.attempt == 1_101 and MAX_DOUBLINGS < 1_000
    assert Backoff(0.5, 30.0, give_up_s=10.0, last_frame=0.0).next_wait(11.0) is None  # no frame for 10 s: give up


def test_a_reader_keeps_retrying_past_1100_failures_and_an_unexpected_error_ends_it_failed():
    source = check_source("rtsp://cam.local:554/live/1", ALLOWED)
    stop, calls = threading.Event(), []

    def refused(target, **options):
        calls.append(target)
        if len(calls) == 1_100:
            stop.set()
        raise OSError("connection refused")

    reader = _reader(source, refused, stop)
    reader.run()  # on the test's thread: an overflow would raise here
    assert len(calls) == 1_100 and reader.state == "connecting" and reader.last_error == "OSError: connection refused"

    ended = threading.Event()
    broken = _reader(source, lambda target, **options: 1 / 0, threading.Event(), ended)
    broken.run()
    assert broken.state == "failed" and ended.is_set()
    assert broken.last_error == "unexpected error: ZeroDivisionError: division by zero"


def test_credentials_never_reach_the_status_the_error_or_the_log(caplog):
    url = "rtsp://admin:hunter2%21@cam.local:554/live/1"
    source = check_source(url, ("rtsp://admin:hunter2%21@cam.local:554/live/",))
    assert source.target == url and source.shown == "rtsp://***@cam.local:554/live/1"
    stop = threading.Event()

    def refused(target, **options):
        stop.set()
        raise OSError(f"[Errno 111] Connection refused: '{target}' (user admin:hunter2!)")

    reader = _reader(source, refused, stop)
    with caplog.at_level(logging.DEBUG):
        reader.run()
    assert reader.last_error and "hunter2" not in reader.last_error and "***" in reader.last_error
    assert "hunter2" not in caplog.text
    with pytest.raises(ServiceError) as refused_elsewhere:
        check_source("rtsp://admin:hunter2@cam.local:554/other/1", ALLOWED)
    assert "hunter2" not in refused_elsewhere.value.message


class _Packets:
    """A source whose video sends ``video_frames`` frames and then stops while its audio keeps arriving."""

    def __init__(self, video_frames: int) -> None:
        self.video_frames = video_frames
        video = SimpleNamespace(index=0, average_rate=10, codec_context=SimpleNamespace(thread_count=0))
        video.decode = lambda packet: packet.frames
        self.streams = SimpleNamespace(video=[video])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def demux(self):
        for i in range(self.video_frames):
            picture = SimpleNamespace(time=i / 10, to_ndarray=lambda format: np.zeros((8, 8, 3), np.uint8))
            yield SimpleNamespace(stream=SimpleNamespace(index=0), frames=[picture])
        while True:  # audio, for ever
            time.sleep(0.01)
            yield SimpleNamespace(stream=SimpleNamespace(index=1), frames=[])


def test_a_frozen_video_whose_audio_keeps_arriving_is_reconnected():
    source = check_source("rtsp://cam.local:554/live/1", ALLOWED)
    stop, opened = threading.Event(), []

    def opener(target, **options):
        opened.append(target)
        if len(opened) == 2:
            stop.set()
        return _Packets(video_frames=3)

    reader = _reader(source, opener, stop, read_timeout_s=0.3)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the reader waited on the audio for ever"
    assert len(opened) == 2 and "no video frame for 0.3 s" in (reader.last_error or "")


# Processing ------------------------------------------------------------------------------------------------------
class _Model:
    """The model as a stream sees it; the first clip's answer waits for ``release()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.description = SimpleNamespace(frames_per_clip=2, preprocess=PREPROCESS)
        self.loop, self.hold, self.calls = loop, asyncio.Event(), 0
        self.lock_held_while_preparing: list[bool] = []
        self.stream: Stream | None = None

    def prepare(self, frames):
        assert self.stream is not None
        self.lock_held_while_preparing.append(self.stream._lock.locked())
        return frames

    async def submit(self, clip, background=False):
        self.calls += 1
        if self.calls == 1:
            await self.hold.wait()
        return BatchResult(np.full(3, 0.8, np.float32), queue_s=0.0, inference_s=0.0, batch_size=1)

    def release(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.hold.set)


class _Detector:
    def __init__(self) -> None:
        self.visible = True

    def detect(self, frames):
        if not self.visible:
            return [(np.zeros((0, 4)), np.zeros(0))]
        return [(np.array([[40.0, 20.0, 80.0, 100.0]]), np.array([0.95]))]


@pytest.fixture
def harness():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    model, detector = _Model(loop), _Detector()
    events, ended = [], []
    config = StreamConfig(
        detection_interval=1,
        update_s=0.1,
        max_tracks=4,
        track_lost_s=0.3,
        open_timeout_s=1,
        read_timeout_s=1,
        retry_max_s=1,
        give_up_s=1,
        decode_threads=1,
    )
    stream = Stream(
        "s1",
        "gate",
        check_source("rtsp://cam.local:554/live/1", ALLOWED),
        config,
        detector,
        model,
        StreamMetrics(CollectorRegistry()).labels("s1"),
        loop,
        on_event=lambda stream, event: events.append(event),
        on_track_end=ended.append,
        on_finished=lambda stream: None,
    )
    model.stream = stream
    lock_held_while_cutting = []
    square = stream._square

    def cutting(crop):
        lock_held_while_cutting.append(stream._lock.locked())
        return square(crop)

    stream._square = cutting
    yield SimpleNamespace(
        stream=stream, model=model, detector=detector, events=events, ended=ended, cutting=lock_held_while_cutting
    )
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _feed(stream: Stream, times) -> None:
    for t in times:
        stream._process_frame(Frame(t, time.monotonic(), datetime.now(UTC), np.zeros((120, 160, 3), np.uint8)))


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_track_lost_while_its_window_is_with_the_model_ends_after_that_answer_and_includes_it(harness):
    _feed(harness.stream, [i / 10 for i in range(6)])  # confirmed, two crops: the first window goes out and waits
    _until(lambda: harness.model.calls == 1)
    harness.detector.visible = False
    _feed(harness.stream, [0.6 + i / 10 for i in range(6)])  # the track is lost while its window waits
    time.sleep(0.2)
    assert harness.events == [] and harness.model.calls == 1  # no end yet, and no second window for it
    harness.model.release()
    _until(lambda: harness.ended)
    time.sleep(0.1)
    assert [event.kind for event in harness.events] == ["track_end"]
    [ended] = harness.ended
    assert ended.windows == 1 and len(ended.probabilities) == 3  # the stored track has that window's answer
    assert harness.events[0].track.windows == 1


def test_events_stay_small_however_long_the_track_and_crops_are_cut_outside_the_lock(harness):
    harness.model.release()
    _feed(harness.stream, [i / 10 for i in range(MAX_BOXES + 50)])
    harness.detector.visible = False
    _feed(harness.stream, [60.0 + i / 10 for i in range(5)])
    _until(lambda: harness.ended)
    time.sleep(0.1)
    kinds = [event.kind for event in harness.events]
    assert kinds.count("track_update") > 5 and kinds[-1] == "track_end"
    sizes = [len(pickle.dumps(event)) for event in harness.events]
    assert max(sizes) < 2_000, max(sizes)  # the 512 boxes and the thumbnail go to the store only
    assert len(harness.ended[0].boxes) == MAX_BOXES and harness.ended[0].thumbnail is not None
    assert harness.cutting and not any(harness.cutting)
    assert harness.model.lock_held_while_preparing and not any(harness.model.lock_held_while_preparing)


# The manager -----------------------------------------------------------------------------------------------------
def _manager(tmp_path, tiny_checkpoint, **settings) -> StreamManager:
    values = dict(stream_sources=(f"file://{tmp_path}/", "http://[::1]/"), stream_give_up_s=1)
    return StreamManager(make_settings(tiny_checkpoint, **values | settings), _Model(), Metrics(), _Detector())


def _broken(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    return path.as_uri()


def test_two_concurrent_deletes_give_one_404_and_shutting_down_refuses_new_streams(tmp_path, tiny_checkpoint):
    async def scenario():
        manager = _manager(tmp_path, tiny_checkpoint)
        await manager.start()
        stream = manager.add(StreamSpec(name="a", url=_broken(tmp_path, "a.mp4")))
        results = await asyncio.gather(manager.remove(stream.id), manager.remove(stream.id), return_exceptions=True)
        assert results[0] is None and isinstance(results[1], ServiceError), results
        assert results[1].code == ErrorCode.NOT_FOUND and manager.streams == {}
        manager.begin_stop()
        with pytest.raises(ServiceError) as refused:
            manager.add(StreamSpec(name="b", url=_broken(tmp_path, "b.mp4")))
        assert refused.value.code == ErrorCode.NOT_READY
        await manager.stop()
        assert manager.streams == {}  # nothing started that nobody stops

    asyncio.run(scenario())


def test_streams_that_ended_by_themselves_do_not_pile_up(tmp_path, tiny_checkpoint):
    async def scenario():
        manager = _manager(tmp_path, tiny_checkpoint, max_streams=2)
        await manager.start()
        ids = []
        for i in range(5):
            stream = manager.add(StreamSpec(name=f"s{i}", url=_broken(tmp_path, f"{i}.mp4")))
            ids.append(stream.id)
            for _ in range(500):
                if stream.ended:
                    break
                await asyncio.sleep(0.01)
            assert stream.state == "failed"
        assert list(manager.streams) == ids[-2:]  # the newest two ended streams stay listed with their status
        series = {
            sample.labels["stream"] for sample in manager.metrics.streams.families["frames_in"].collect()[0].samples
        }
        assert series == set(ids[-2:])
        await manager.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "reason"), [("file:///d/%00x", "character '\\x00'"), ("http://[::1/x", "cannot be read")]
)
def test_a_malformed_url_in_the_streams_file_stops_the_start_with_one_clear_line(
    tmp_path, tiny_checkpoint, url, reason
):
    listed = tmp_path / "streams.json"
    listed.write_text(json.dumps([{"name": "gate", "url": url}]))
    manager = _manager(tmp_path, tiny_checkpoint, streams_file=listed)
    with pytest.raises(StartupError) as stopped:
        asyncio.run(manager.start())
    message = str(stopped.value)
    assert message.startswith(f"VTFPAR_STREAMS_FILE={listed}: stream 'gate': ") and reason in message
    assert "\n" not in message
