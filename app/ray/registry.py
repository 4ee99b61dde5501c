"""The one registry of an application's live streams: ids, settings and status, asked by every ingress replica.

A Serve deployment of one replica (like the Coordinator), so that Serve owns its lifetime with the application's
and ingress replicas reach it by handle; it outlives any ingress replica, so the streams, their ids and settings
do too. It opens ``VTFPAR_STREAMS_FILE``'s streams as it starts, creates one camera actor per stream
(``app.ray.camera``), placed by Ray on any node with ``camera_cpus`` free, and removes it on DELETE.

Every second it asks each camera its status and keeps the answer, so that ``GET /streams`` answers at once
whatever a camera is doing. A camera whose actor answers with a new incarnation was restarted by Ray (a crash, its
node lost): that counts as a reconnect. A camera whose actor is down (Ray restarting it) shows its last status
as ``reconnecting``.

Errors come back as values (:class:`Refusal`), not exceptions: the ingress raises them as the service's own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray import serve

from ..errors import ErrorCode, ServiceError
from ..settings import Settings
from ..streams import StreamSpec
from ..streams.manager import new_stream_id, read_streams_file, stream_config
from ..streams.sources import check_source
from ..tracks import Detector
from ..tracks.scene import OFF
from .camera import STOP_TIMEOUT_S, CameraResources, start_camera
from .logs import configure_replica_logging

log = logging.getLogger(__name__)

REGISTRY = "StreamRegistry"
POLL_S = 1.0
STATUS_TIMEOUT_S = 2.0
# After a camera stopped, how long its events readers have to fetch the last events before the actor goes.
CLOSE_GRACE_S = 1.0
FINISHED = ("stopped", "failed")


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    message: str

    def raise_(self):
        raise ServiceError(self.code, self.message)


@dataclass
class _Camera:
    spec: StreamSpec
    actor: Any  # the Camera actor's handle
    status: dict
    incarnation: str | None = None
    restarts: int = 0


@serve.deployment(name=REGISTRY, num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class StreamRegistry:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, settings: Settings, model, coordinator, resources: CameraResources, detector: Detector | None = None
    ) -> None:
        configure_replica_logging(settings)
        self.settings, self.model, self.coordinator = settings, model, coordinator
        self.resources, self.detector = resources, detector
        self.cameras: dict[str, _Camera] = {}
        if settings.streams_file is not None:
            for spec in read_streams_file(settings.streams_file):
                if isinstance(opened := self.open(spec), Refusal):
                    raise RuntimeError(f"VTFPAR_STREAMS_FILE={settings.streams_file}: {spec.name!r}: {opened.message}")
        self._polling = asyncio.get_running_loop().create_task(self._poll(), name="cameras-status")

    def open(self, spec: StreamSpec) -> dict | Refusal:
        settings = self.settings
        try:
            source = check_source(
                spec.url, settings.stream_sources, spec.rtsp_transport, settings.stream_playlist_sources
            )
        except ServiceError as exc:
            return Refusal(exc.code, exc.message)
        if settings.detector == OFF and self.detector is None:
            return Refusal(
                ErrorCode.DETECTION_OFF, "streams need the person detector, and detection is off (VTFPAR_DETECTOR)"
            )
        if sum(camera.status["state"] not in FINISHED for camera in self.cameras.values()) >= settings.max_streams:
            return Refusal(
                ErrorCode.TOO_MANY_STREAMS, f"{settings.max_streams} streams are open already (VTFPAR_MAX_STREAMS)"
            )
        stream_id = new_stream_id()
        actor = start_camera(stream_id, spec, settings, self.model, self.coordinator, self.resources, self.detector)
        config = stream_config(settings, spec)
        # Until the actor first answers (it loads the detector and opens the store first).
        status = {
            "id": stream_id,
            "name": spec.name,
            "url": source.shown,
            "state": "connecting",
            "fps_in": 0.0,
            "fps_processed": 0.0,
            "frames_dropped": 0,
            "lag_s": 0.0,
            "active_tracks": 0,
            "reconnects": 0,
            "last_error": None,
            "detection_interval": config.detection_interval,
            "update_s": config.update_s,
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.cameras[stream_id] = _Camera(spec, actor, status)
        log.info("stream %s (%s) opened: %s", stream_id, spec.name, source.shown)
        return status

    async def statuses(self) -> list[dict]:
        return [camera.status for camera in self.cameras.values()]

    async def status(self, stream_id: str) -> dict | Refusal:
        camera = self.cameras.get(stream_id)
        return _unknown(stream_id) if camera is None else camera.status

    async def camera(self, stream_id: str):
        """The camera actor's handle, for its events and pictures."""
        camera = self.cameras.get(stream_id)
        return _unknown(stream_id) if camera is None else camera.actor

    async def remove(self, stream_id: str) -> None | Refusal:
        """Stops the camera (its open tracks end and are stored), then its actor; forgets it at once."""
        camera = self.cameras.pop(stream_id, None)
        if camera is None:
            return _unknown(stream_id)
        try:
            await asyncio.wait_for(camera.actor.stop.remote(), STOP_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("stream %s did not stop cleanly: %s", stream_id, exc)
        await asyncio.sleep(CLOSE_GRACE_S)
        ray.kill(camera.actor, no_restart=True)
        log.info("stream %s removed", stream_id)
        return None

    async def _poll(self) -> None:
        while True:
            await asyncio.gather(*(self._ask(stream_id, camera) for stream_id, camera in list(self.cameras.items())))
            await asyncio.sleep(POLL_S)

    async def _ask(self, stream_id: str, camera: _Camera) -> None:
        try:
            status = await asyncio.wait_for(camera.actor.status.remote(), STATUS_TIMEOUT_S)
        except TimeoutError:  # loading, or busy: its last status stands
            return
        except ray.exceptions.RayActorError:  # Ray is restarting it
            if camera.status["state"] not in FINISHED:
                camera.status = {**camera.status, "state": "reconnecting"}
            return
        incarnation = status.pop("incarnation")
        if camera.incarnation not in (None, incarnation):
            camera.restarts += 1
            log.warning("stream %s: its camera actor was restarted", stream_id)
        camera.incarnation = incarnation
        if stream_id in self.cameras:  # not removed meanwhile
            camera.status = {**status, "reconnects": status["reconnects"] + camera.restarts}

    async def __del__(self) -> None:
        # The application is being deleted: its cameras go with it (their open tracks end and are stored).
        if hasattr(self, "_polling"):
            self._polling.cancel()
        await asyncio.gather(*(self.remove(stream_id) for stream_id in list(self.cameras)), return_exceptions=True)


def _unknown(stream_id: str) -> Refusal:
    return Refusal(ErrorCode.NOT_FOUND, f"no stream {stream_id!r}")
