"""Uploads to model input: sniffing, PyAV/Pillow decoding under limits, sampling, and the runner's preparation.

:class:`Decoder` runs all of it off the event loop in a bounded thread pool (PyAV and Pillow release the GIL
while decoding), so at most ``decode_workers`` uploads decode at once. ``/predict/tracks`` runs its own work
(:mod:`app.tracks`) through the same pool with :meth:`Decoder.run`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Protocol, TypeVar

import numpy as np

from ..errors import ErrorCode, ServiceError
from .images import decode_images
from .limits import Deadline, DecodedMedia, DecodeLimits
from .video import FrameCounter, VideoIndex, decode_frames, decode_video, read_index

log = logging.getLogger(__name__)

__all__ = [
    "Deadline",
    "DecodeLimits",
    "DecodeObserver",
    "DecodedMedia",
    "Decoder",
    "FrameCounter",
    "PreparedClip",
    "VideoIndex",
    "decode_frames",
    "decode_images",
    "decode_video",
    "read_index",
]


class Decoded(Protocol):
    """What a pool job hands back: the codec and frame count it reports to metrics, and its time on the pool."""

    decode_s: float

    @property
    def codec(self) -> str: ...

    @property
    def frames_decoded(self) -> int: ...


D = TypeVar("D", bound=Decoded)


@dataclass
class PreparedClip:
    media: DecodedMedia
    model_input: object  # what the runner's ``prepare`` made of the frames: one item of a model batch
    decode_s: float = 0.0  # decode, sampling and preparation, on a pool thread

    @property
    def codec(self) -> str:
        return self.media.codec

    @property
    def frames_decoded(self) -> int:
        return self.media.frames_decoded


class DecodeObserver:
    """Hooks for metrics; the default observes nothing."""

    def on_decode(self, codec: str, outcome: str, seconds: float, frames_decoded: int | None) -> None: ...


class Decoder:
    """Decodes uploads on a bounded pool and hands their frames to ``prepare`` (the runner's), all within the
    upload's decode deadline."""

    def __init__(
        self,
        limits: DecodeLimits,
        decode_workers: int,
        frames_per_clip: int,
        prepare: Callable[[list[np.ndarray]], object],
        observer: DecodeObserver | None = None,
    ) -> None:
        self.limits = limits
        self.frames_per_clip = frames_per_clip
        self.prepare = prepare
        self.observer = observer or DecodeObserver()
        self._pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="decode")

    async def video(self, file: BinaryIO) -> PreparedClip:
        return await self.run(lambda deadline: self._prepared(decode_video, file, deadline))

    async def images(self, files: Sequence[BinaryIO]) -> PreparedClip:
        return await self.run(lambda deadline: self._prepared(decode_images, files, deadline))

    def _prepared(self, decode, source, deadline: Deadline) -> PreparedClip:
        media = decode(source, self.frames_per_clip, self.limits, deadline)
        return PreparedClip(media=media, model_input=self.prepare(media.frames))

    async def run(self, work: Callable[[Deadline], D]) -> D:
        """Run ``work`` on the pool within one upload's decode deadline, which starts now: a job that waited for
        a worker past it is refused without being started. Cancelling the caller (its client left, or the
        server stops) drops the job if it is still queued, or stops it at its next deadline check and waits for
        that, so that nothing it reads (the request's spooled upload) is closed under it. ``decode_s`` is set
        here."""
        deadline = Deadline(self.limits.decode_timeout_s)

        def job() -> D:
            start = time.perf_counter()
            try:
                deadline.check()
                result = work(deadline)
                deadline.check()
            except ServiceError as exc:
                outcome = "timeout" if exc.code == ErrorCode.DECODE_TIMEOUT else "error"
                self.observer.on_decode("unknown", outcome, time.perf_counter() - start, None)
                raise
            except Exception:
                self.observer.on_decode("unknown", "error", time.perf_counter() - start, None)
                if deadline.abandoned:  # what the work read went away with its request: nothing to report
                    raise ServiceError(ErrorCode.CLIENT_DISCONNECTED, "the request left during decoding") from None
                # Corrupt media can trip PyAV or Pillow in ways the decoders do not anticipate: still the
                # upload's fault, but logged with its traceback in case it is ours.
                log.exception("decoding failed unexpectedly")
                raise ServiceError(ErrorCode.UNDECODABLE_MEDIA, "the upload could not be decoded") from None
            result.decode_s = time.perf_counter() - start
            self.observer.on_decode(result.codec, "ok", result.decode_s, result.frames_decoded)
            return result

        # The copied context carries the request id into the pool thread's log lines.
        context = contextvars.copy_context()
        submitted = self._pool.submit(context.run, job)
        done = asyncio.wrap_future(submitted)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            deadline.abandon()
            if not submitted.cancel():  # running: it stops at its next check
                await asyncio.wait({done})
                if not done.cancelled():
                    done.exception()  # retrieved: the request is gone, and so is any interest in how it ended
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
