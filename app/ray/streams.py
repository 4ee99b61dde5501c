"""The live streams of an ingress replica on Ray: the /streams routes' calls (``app.streams.Streams``) answered by
the application's stream registry and its camera actors, so that every ingress replica answers alike and none
holds a stream. Stopping an ingress replica stops no camera."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import ray

from ..streams import Event, StreamSpec, StreamStatus, TrackEnded
from ..streams.manager import EventListener
from .camera import Events
from .registry import Refusal

POLL_WAIT_S = 5.0  # how long one events poll waits for an event
RETRY_S = 1.0  # a camera actor being restarted: ask again after this
SNAPSHOT_TIMEOUT_S = 5.0


def _answer(value):
    if isinstance(value, Refusal):
        value.raise_()
    return value


class RayStreams:
    def __init__(self, registry) -> None:
        self.registry = registry  # a DeploymentHandle to the StreamRegistry deployment

    def add_track_end_listener(self, callback: Callable[[TrackEnded], None]) -> None:
        """Ignored: the camera actors store the tracks they end themselves, once, where they end."""

    def add_event_listener(self, callback: EventListener) -> None:
        """Ignored: the camera actors' events reach an ingress replica only while someone reads them, so each camera
        actor matches the alert rules on its own tracks (``app.ray.camera``)."""

    async def start(self) -> None:
        """Nothing to open: the registry opens VTFPAR_STREAMS_FILE's streams, once for the application."""

    def begin_stop(self) -> None:
        """Nothing to stop: the cameras run on whatever ingress replica comes or goes."""

    async def stop(self) -> None:
        """As :meth:`begin_stop`."""

    async def open(self, spec: StreamSpec) -> StreamStatus:
        return StreamStatus.model_validate(_answer(await self.registry.open.remote(spec)))

    async def statuses(self) -> list[StreamStatus]:
        return [StreamStatus.model_validate(status) for status in await self.registry.statuses.remote()]

    async def status(self, stream_id: str) -> StreamStatus:
        return StreamStatus.model_validate(_answer(await self.registry.status.remote(stream_id)))

    async def remove(self, stream_id: str) -> None:
        _answer(await self.registry.remove.remote(stream_id))

    async def watch(self, stream_id: str) -> WatchedCamera:
        return WatchedCamera(_answer(await self.registry.camera.remote(stream_id)))

    async def events(self, stream_id: str) -> AsyncIterator[Event]:
        camera = _answer(await self.registry.camera.remote(stream_id))
        return self._read(stream_id, camera)

    async def _read(self, stream_id: str, camera) -> AsyncIterator[Event]:
        """Polls the camera actor: each poll returns the events since the last one, in the order the camera sent
        them; a camera restarting is asked again, a camera removed ends the events."""
        incarnation: str | None = None
        after: int | None = None
        while True:
            try:
                answer: Events = await camera.events.remote(incarnation, after, POLL_WAIT_S)
            except ray.exceptions.RayActorError:
                if isinstance(await self.registry.status.remote(stream_id), Refusal):
                    return  # removed
                await asyncio.sleep(RETRY_S)
                continue
            for _, event in answer.events:
                yield event
            incarnation, after = answer.incarnation, answer.last
            if answer.closed:
                return


class WatchedCamera:
    """A camera actor as the preview sees it (``app.streams.Watched``); ``snapshot`` runs on a worker thread."""

    def __init__(self, camera) -> None:
        self.camera = camera
        self.ended = False

    def snapshot(self):
        try:
            snapshot, self.ended = ray.get(self.camera.snapshot.remote(), timeout=SNAPSHOT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:  # a busy camera: no picture this time
            return None
        except ray.exceptions.RayActorError:  # removed, or restarting: the preview ends
            self.ended = True
            return None
        return snapshot
