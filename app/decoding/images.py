"""A tracklet uploaded as image files (JPEG/PNG crops in temporal order, as MARS stores them).

Decoded with Pillow, the library training reads such crops with, so served and trained pixels agree. Every
file's header is checked (format, size) before any pixel is decoded, and only the files the sampled indices
pick are decoded. Crops may differ in size (a tracker's boxes do): each is padded and resized on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from model import sample_frame_indices

from ..errors import ErrorCode, ServiceError
from .limits import Deadline, DecodedMedia, DecodeLimits
from .sniff import SNIFF_BYTES, sniff_image

log = logging.getLogger(__name__)


def _unreadable(what: str, action: str, exc: Exception) -> ServiceError:
    # Pillow's messages can name the upload's file object (a heap address): the log gets them, the client not.
    log.info("%s: %s failed: %s", what, action, exc)
    return ServiceError(ErrorCode.UNDECODABLE_MEDIA, f"{what}: {action} failed ({type(exc).__name__})")


def decode_images(
    files: Sequence[BinaryIO], num_frames: int, limits: DecodeLimits, deadline: Deadline | None = None
) -> DecodedMedia:
    """The ``num_frames`` frames sampled from a frames upload; ``deadline`` defaults to the limits' own."""
    deadline = deadline or Deadline(limits.decode_timeout_s)
    if len(files) > limits.max_upload_frames:
        raise ServiceError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"{len(files)} frame files uploaded; the limit is {limits.max_upload_frames}"
        )
    limits.check_frame_count(len(files), "the frames upload")
    images, kinds = [], set()
    for position, file in enumerate(files):
        deadline.check()
        what = f"frames[{position}]"
        head = file.read(SNIFF_BYTES)
        file.seek(0)
        kind = sniff_image(head, what)
        kinds.add(kind.name)
        try:
            image = Image.open(file, formats=[kind.name.upper()])  # reads the header only
        except Image.DecompressionBombError as exc:  # Pillow's own ceiling, far above max_pixels by default
            raise ServiceError(ErrorCode.TOO_MANY_PIXELS, f"{what}: {exc}") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # Pillow reports broken PNGs as SyntaxError
            raise _unreadable(what, f"reading the {kind.name} header", exc) from None
        limits.check_frame_size(*image.size, what)
        images.append(image)

    indices = sample_frame_indices(len(images), num_frames, "segment_middle")
    decoded: dict[int, np.ndarray] = {}
    for index in sorted(set(indices)):
        deadline.check()
        try:
            decoded[index] = np.asarray(images[index].convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise _unreadable(f"frames[{index}]", "decoding", exc) from None
    width, height = images[0].size
    return DecodedMedia(
        frames=[decoded[i] for i in indices],
        indices=indices,
        total_frames=len(images),
        source="frames",
        container="+".join(sorted(kinds)),
        codec="+".join(sorted(kinds)),
        width=width,
        height=height,
        duration_s=None,
        frames_decoded=len(decoded),
    )
