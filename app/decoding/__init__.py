"""Uploads to model input: sniffing, PyAV/Pillow decoding under limits, sampling, and the runner's preparation.

:class:`Decoder` runs all of it off the event loop in a bounded thread pool (PyAV and Pillow release the GIL
while decoding), so at most ``decode_workers`` uploads decode at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..errors import ErrorCode, ServiceError
from .images import decode_images
from .limits import Deadline, DecodedMedia, DecodeLimits
from .video import decode_video

log = logging.getLogger(__name__)

__all__ = [
    "DecodeLimits",
    "DecodeObserver",
    "DecodedMedia",
    "Decoder",
    "PreparedClip",
    "decode_images",
    "decode_video",
]


@dataclass
class PreparedClip:
    media: DecodedMedia
    model_input: object  # what the runner's ``prepare`` made of the frames: one item of a model batch
    decode_s: float  # decode, sampling and preparation, on a pool thread


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
        return await self._run(decode_video, file)

    async def images(self, files: Sequence[BinaryIO]) -> PreparedClip:
        return await self._run(decode_images, files)

    async def _run(self, decode, source) -> PreparedClip:
        def work() -> PreparedClip:
            start = time.perf_counter()
            deadline = Deadline(self.limits.decode_timeout_s)
            try:
                media = decode(source, self.frames_per_clip, self.limits, deadline)
                model_input = self.prepare(media.frames)
                deadline.check()
            except ServiceError as exc:
                outcome = "timeout" if exc.code == ErrorCode.DECODE_TIMEOUT else "error"
                self.observer.on_decode("unknown", outcome, time.perf_counter() - start, None)
                raise
            except Exception:
                # Corrupt media can trip PyAV or Pillow in ways the decoders do not anticipate: still the
                # upload's fault, but logged with its traceback in case it is ours.
                log.exception("decoding failed unexpectedly")
                self.observer.on_decode("unknown", "error", time.perf_counter() - start, None)
                raise ServiceError(ErrorCode.UNDECODABLE_MEDIA, "the upload could not be decoded") from None
            seconds = time.perf_counter() - start
            self.observer.on_decode(media.codec, "ok", seconds, media.frames_decoded)
            return PreparedClip(media=media, model_input=model_input, decode_s=seconds)

        # The copied context carries the request id into the pool thread's log lines.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, work)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
