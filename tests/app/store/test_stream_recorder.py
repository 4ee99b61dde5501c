"""A track a live stream ends is stored through ``StreamRecorder.track_ended``: called on the event loop, it
returns at once, and the track is stored with the stream's name as its camera."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np

from app.store import AttributeSpec, ModelSpec, Search
from app.store.recording import StreamRecorder

MODEL = ModelSpec(
    "m", "v", "mars", (AttributeSpec("female", "gender", "female", 0.5), AttributeSpec("hat", "hat", "hat", 0.4))
)


def ended_track(track_id: int) -> SimpleNamespace:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    return SimpleNamespace(
        stream_id="s1",
        stream_name="gate-3",
        track_id=track_id,
        first_seen_s=12.0,
        last_seen_s=15.5,
        first_seen_at=start,
        last_seen_at=start + timedelta(seconds=3.5),
        boxes=[(12.0, 1.0, 2.0, 41.0, 102.0), (15.5, 3.0, 2.0, 43.0, 102.0)],
        windows=3,
        probabilities=[0.8, 0.3],
        thumbnail=np.zeros((100, 40, 3), np.uint8),
    )


def test_an_ended_stream_track_is_stored_without_blocking_the_loop(open_store):
    store = open_store("sqlite")
    writes = []
    add = store.add

    def slow_add(model, tracks):
        time.sleep(0.2)  # a slow database: the loop must not wait for it
        writes.append(tracks)
        return add(model, tracks)

    store.add = slow_add  # type: ignore[method-assign]
    recorder = StreamRecorder(store, MODEL)

    async def run() -> float:
        started = time.perf_counter()
        recorder.track_ended(ended_track(7))
        returned = time.perf_counter() - started
        await recorder.drain()
        return returned

    assert asyncio.run(run()) < 0.05
    ((track, score),) = store.search(Search(), MODEL).tracks
    assert (track.camera, track.source, track.track_id, track.windows) == ("gate-3", "stream", 7, 3)
    assert track.first_seen == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert store.get(track.id).boxes == [[0.0, 1.0, 2.0, 41.0, 102.0], [3.5, 3.0, 2.0, 43.0, 102.0]]  # not searched
    assert [(a.name, a.probability, a.positive) for a in track.attributes] == [
        ("female", 0.8, True),
        ("hat", 0.3, False),
    ]
    assert store.thumbnail(track.id).startswith(b"\xff\xd8")  # a JPEG
