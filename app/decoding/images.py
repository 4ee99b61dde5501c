"""A tracklet uploaded as image files (JPEG/PNG crops in temporal order, as MARS stores them).

Decoded with Pillow, the library training reads such crops with, so served and trained pixels agree. Every
file's header is checked (format, size, same size as the first) before any pixel is decoded, and only the
files the sampled indices pick are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from model import sample_frame_indices

from ..errors import ErrorCode, ServiceError
from .limits import Deadline, DecodedMedia, DecodeLimits
from .sniff import SNIFF_BYTES, sniff_image


def decode_images(files: Sequence[BinaryIO], num_frames: int, limits: DecodeLimits) -> DecodedMedia:
    if len(files) > limits.max_upload_frames:
        raise ServiceError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"{len(files)} frame files uploaded; the limit is {limits.max_upload_frames}"
        )
    limits.check_frame_count(len(files), "the frames upload")
    deadline = Deadline(limits.timeout_s)
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
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # Pillow reports broken PNGs as SyntaxError
            raise ServiceError(
                ErrorCode.UNDECODABLE_MEDIA, f"{what}: cannot read the {kind.name} header: {exc}"
            ) from None
        limits.check_pixels(*image.size, what)
        if images and image.size != images[0].size:
            raise ServiceError(
                ErrorCode.FRAME_SIZE_MISMATCH,
                f"{what} is {image.size[0]}x{image.size[1]} but frames[0] is "
                f"{images[0].size[0]}x{images[0].size[1]}; a tracklet's crops must share one size",
            )
        images.append(image)

    indices = sample_frame_indices(len(images), num_frames, "segment_middle")
    decoded: dict[int, np.ndarray] = {}
    for index in sorted(set(indices)):
        deadline.check()
        try:
            decoded[index] = np.asarray(images[index].convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise ServiceError(ErrorCode.UNDECODABLE_MEDIA, f"frames[{index}] cannot be decoded: {exc}") from None
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
