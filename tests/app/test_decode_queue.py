"""Waiting for a decode worker: the decode deadline counts from admission, a job whose request has gone is dropped
(while queued) or stopped (while running) before its upload is released, and neither leaves a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass

import pytest

from app.api.uploads import BodySpool
from app.decoding import Deadline, DecodeLimits, Decoder
from app.errors import ErrorCode, ServiceError
from app.settings import Settings
from benchmarks.media import encode, frames

from .harness import make_settings, metric, serving


@dataclass
class Decoded:
    codec: str = "h264"
    frames_decoded: int = 1
    decode_s: float = 0.0


def decoder(timeout_s: float) -> Decoder:
    limits = DecodeLimits.from_settings(Settings(decode_timeout_s=timeout_s))
    return Decoder(limits, decode_workers=1, frames_per_clip=6, prepare=lambda frames: frames)


def test_the_deadline_counts_the_wait_for_a_worker_and_a_job_queued_past_it_never_starts():
    pool = decoder(timeout_s=0.3)
    started = []

    def busy(deadline: Deadline) -> Decoded:
        time.sleep(0.6)  # the only worker, for longer than the deadline
        return Decoded()

    def queued(deadline: Deadline) -> Decoded:
        started.append(True)
        return Decoded()

    async def both():
        return await asyncio.gather(pool.run(busy), pool.run(queued), return_exceptions=True)

    try:
        first, second = asyncio.run(both())
    finally:
        pool.close()
    assert isinstance(second, ServiceError) and second.code == ErrorCode.DECODE_TIMEOUT, second
    assert "waiting for a decode worker included" in second.message
    assert started == []


def test_a_running_job_whose_request_leaves_stops_before_its_upload_is_released(caplog):
    """The route closes the spool once ``run`` returns; ``run`` returns only once the job has stopped, so the job
    never reads a closed spool (which was logged as an unexpected decoding failure, with its traceback)."""
    pool = decoder(timeout_s=30)
    spool = BodySpool()
    asyncio.run(spool.write(b"x" * 1000))
    reading, stopped = threading.Event(), threading.Event()

    def read_until_stopped(deadline: Deadline) -> Decoded:
        section = spool.section(0, 1000)
        try:
            while True:
                deadline.check()
                section.seek(0)
                section.read()
                reading.set()
                time.sleep(0.005)
        finally:
            stopped.set()

    async def request_that_leaves():
        async def route():
            try:
                return await pool.run(read_until_stopped)
            finally:
                spool.close()

        task = asyncio.ensure_future(route())
        await asyncio.to_thread(reading.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="app"):
        try:
            asyncio.run(request_that_leaves())
            assert stopped.is_set(), "run returned while its job was still reading the upload"
        finally:
            pool.close()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


@pytest.mark.e2e
def test_a_request_whose_client_leaves_while_its_decode_is_queued_is_never_decoded(tiny_checkpoint):
    clip = encode("avi", frames(8))
    settings = make_settings(tiny_checkpoint, decode_workers=1)
    with serving(settings) as running:
        gate = threading.Event()
        running.service.decoder._pool.submit(gate.wait, 30)  # the only decode worker is busy
        before = metric(running.url, "vtfpar_decode_duration_seconds_count")
        port = int(running.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as conn:
            head = (
                f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: video/x-msvideo\r\n"
                f"Content-Length: {len(clip)}\r\n\r\n"
            )
            conn.sendall(head.encode() + clip)
            deadline = time.monotonic() + 10
            while running.service.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # admitted, its decode queued behind the busy worker
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while running.service.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)  # the route saw the client leave
        gate.set()
        time.sleep(0.5)  # the worker is free: a job left in the queue would run now
        after = metric(running.url, "vtfpar_decode_duration_seconds_count")
    assert running.service.in_flight == 0
    assert after == before, "the request's upload was decoded after its client had left"
