"""Turning finished tracks into stored ones: those of an upload (/predict/tracks, /predict/scene with
``store=true``) and those a live stream ends (:class:`StreamRecorder`, a track-end listener)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from .records import ModelSpec, NewTrack
from .store import TrackStore

log = logging.getLogger(__name__)
FALLBACK_FPS = 25.0  # for a video whose container states no duration


def upload_tracks(prepared, results, camera: str, start: datetime) -> list[NewTrack]:
    """The tracks of one answered upload (an ``app.tracks.PreparedTracks`` and its batch rows); ``start`` is the
    time of the recording's first frame. A frame's time is its index times the video's mean frame duration."""
    index = prepared.index
    frame_s = index.duration_s / index.total_frames if index.duration_s else 1 / FALLBACK_FPS
    thumbnails = prepared.thumbnails or [None] * len(prepared.tracks)
    tracks = []
    for track, result, thumbnail in zip(prepared.tracks, results, thumbnails, strict=True):
        boxes = track.plan.boxes
        first = boxes[0].frame * frame_s
        tracks.append(
            NewTrack(
                camera=camera,
                source="upload",
                track_id=track.plan.track_id,
                first_seen=start + timedelta(seconds=first),
                last_seen=start + timedelta(seconds=boxes[-1].frame * frame_s),
                boxes=[
                    [round(b.frame * frame_s - first, 3), b.left, b.top, b.left + b.width, b.top + b.height]
                    for b in boxes
                ],
                windows=1,
                probabilities=result.probabilities.tolist(),
                thumbnail=thumbnail,
                embedding=result.embedding,
                image_embedding=result.image_embedding,
            )
        )
    return tracks


def stream_track(ended) -> NewTrack:
    """A track a live stream ended (see :class:`StreamRecorder`) as a track to store; its camera is the stream's
    name."""
    first_s = ended.first_seen_s
    return NewTrack(
        camera=ended.stream_name,
        source="stream",
        track_id=ended.track_id,
        first_seen=ended.first_seen_at,
        last_seen=ended.last_seen_at,
        boxes=[[round(t - first_s, 3), x0, y0, x1, y1] for t, x0, y0, x1, y1 in ended.boxes],
        windows=ended.windows,
        probabilities=list(ended.probabilities),
        thumbnail=ended.thumbnail,
        embedding=getattr(ended, "embedding", None),  # optional: senders from before embeddings lack it
        image_embedding=getattr(ended, "image_embedding", None),
    )


class StreamRecorder:
    """Stores every track a live stream ends: register ``recorder.track_ended`` with the stream manager's
    ``add_track_end_listener``. It is called on the event loop and returns at once; the write runs on a thread.

    The ended track has ``stream_id``, ``stream_name``, ``track_id``, ``first_seen_s``/``last_seen_s`` (stream
    seconds), ``first_seen_at``/``last_seen_at`` (aware UTC), ``boxes`` [(stream seconds, x0, y0, x1, y1)],
    ``windows``, ``probabilities`` (fused, schema order), ``thumbnail`` (RGB uint8 best crop, or None) and,
    optionally, ``embedding`` (the fused appearance embedding) and ``image_embedding`` (the fused CLIP image
    embedding)."""

    def __init__(self, store: TrackStore, model: ModelSpec) -> None:
        self.store, self.model = store, model
        self._writes: set[asyncio.Task] = set()

    def track_ended(self, ended) -> None:
        if not ended.windows:  # followed too briefly for a clip: no attributes, nothing to search for
            return
        task = asyncio.get_running_loop().create_task(self._write(stream_track(ended)))
        self._writes.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._writes.discard)

    async def _write(self, track: NewTrack) -> None:
        try:
            await self.store.run(self.store.add, self.model, [track])
        except Exception:
            log.exception("could not store track %s of camera %r", track.track_id, track.camera)

    async def drain(self) -> None:
        """Waits for the writes under way (at shutdown)."""
        await asyncio.gather(*self._writes, return_exceptions=True)
