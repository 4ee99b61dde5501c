"""Uploads to model input: sniffing, PyAV/Pillow decoding under limits, sampling and preprocessing.

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

import torch

from ..errors import ErrorCode, ServiceError
from .images import decode_images
from .limits import DecodedMedia, DecodeLimits
from .video import decode_video

log = logging.getLogger(__name__)

__all__ = ["DecodeLimits", "DecodedMedia", "Decoder", "PreparedClip", "decode_images", "decode_video"]


@dataclass
class PreparedClip:
    media: DecodedMedia
    tensor: torch.Tensor  # [T, 3, S, S], normalised: one row of a model batch
    decode_s: float  # decode + preprocess, on a pool thread


class Decoder:
    def __init__(
        self, limits: DecodeLimits, workers: int, frames_per_clip: int, preprocess: Callable[[list], torch.Tensor]
    ) -> None:
        self.limits = limits
        self.frames_per_clip = frames_per_clip
        self.preprocess = preprocess
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    async def video(self, file: BinaryIO) -> PreparedClip:
        return await self._run(decode_video, file)

    async def frames(self, files: Sequence[BinaryIO]) -> PreparedClip:
        return await self._run(decode_images, files)

    async def _run(self, decode, source) -> PreparedClip:
        def work() -> PreparedClip:
            start = time.perf_counter()
            try:
                media = decode(source, self.frames_per_clip, self.limits)
            except ServiceError:
                raise
            except Exception:
                # Corrupt media can trip PyAV or Pillow in ways the decoders do not anticipate: still the
                # upload's fault, but logged with its traceback in case it is ours.
                log.exception("decoding failed unexpectedly")
                raise ServiceError(ErrorCode.UNDECODABLE_MEDIA, "the upload could not be decoded") from None
            tensor = self.preprocess(media.frames)
            return PreparedClip(media=media, tensor=tensor, decode_s=time.perf_counter() - start)

        # The copied context carries the request id into the pool thread's log lines.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, work)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
