"""Retention: stored tracks last seen more than ``VTFPAR_RETENTION_DAYS`` ago are purged at start and hourly, and
so is the side data others keep about people (``also``: the alerts); each round also sweeps the thumbnails no row
names (left by a crash)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from .store import TrackStore

log = logging.getLogger(__name__)
PURGE_EVERY_S = 3600.0


async def purge_periodically(
    store: TrackStore,
    retention_days: float,
    every_s: float = PURGE_EVERY_S,
    also: Sequence[Callable[[float], int]] = (),
) -> None:
    while True:  # with retention_days 0 the purge keeps everything, and the sweep still runs
        try:
            purged = await store.run(store.purge, retention_days)
            for purge in also:
                await store.run(purge, retention_days)
            swept = await store.run(store.sweep_thumbnails)
        except Exception:  # the database may be away for a while; the next round tries again
            log.exception("could not purge stored tracks")
        else:
            if purged:
                log.info("purged %d stored tracks older than %g days", purged, retention_days)
            if swept:
                log.info("swept %d thumbnails that no stored track names", swept)
        await asyncio.sleep(every_s)
