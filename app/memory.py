"""Large buffers go back to the system when freed, so that the server's memory follows what it holds (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
LARGE_BUFFER_BYTES = 4 * 1024 * 1024


def return_large_buffers() -> None:
    """Serve every allocation of 4 MiB or more with its own mapping, unmapped when freed.

    glibc raises this threshold each time such a block is freed (up to 32 MiB); after that, full frames and the
    float crops resized from them (6 to 24 MB at 1080p) are carved from per-thread heaps, which keep their pages
    once freed. The same three 1080p /predict/tracks requests then raised the process's peak memory by anything
    from 0.5 to 1.25 GiB, depending on how their buffers interleaved; with the threshold fixed, by about 0.1 GiB.
    The price: such a block's pages are faulted in afresh each time (measured in tests/app/test_tracks_memory.py:
    6-8 ms of system CPU per full-frame 1080p track, about 0.5 s per request of 64 of them, user CPU unchanged;
    crops of people in a street scene stay far below 4 MiB)."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        applied = libc.mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its own policy stays
        applied = 0
    if not applied:
        log.debug("malloc's mmap threshold left as it is")
