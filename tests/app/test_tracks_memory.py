"""What one /predict/tracks request may hold in memory: the frame being decoded and each track's crops at the model's
input size, never full-size crops. Three requests of six 1080p frames and 64 tracks covering the frame (about
2 GiB of crops each, were they kept at full size) raise a real server's peak memory by far less than 1 GiB."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from benchmarks.media import encode, frames
from benchmarks.servers import AppProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WIDTH, HEIGHT, FRAMES, TRACKS, REQUESTS, BATCH = 1920, 1080, 6, 64, 3, 8
MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None, status
    return int(found[1]) * 1024


def full_frame_tracks(count: int) -> bytes:
    """MOT lines: ``count`` tracks over every frame, each box the frame less ``count`` columns, shifted by one
    column per track so that no two tracks cut the same pixels."""
    width = WIDTH - count
    lines = [f"{f},{t},{t},0,{width},{HEIGHT}\n" for t in range(1, count + 1) for f in range(1, FRAMES + 1)]
    return "".join(lines).encode()


def post(url: str, video: bytes, tracks: bytes) -> httpx.Response:
    files = {"video": ("street.mp4", video), "tracks": ("gt.txt", tracks)}
    return httpx.post(f"{url}/predict/tracks", files=files, timeout=300)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
def test_three_requests_of_64_full_frame_tracks_raise_peak_memory_by_well_under_1_gib(tiny_checkpoint, tmp_path):
    video = encode("mp4", frames(FRAMES, width=WIDTH, height=HEIGHT))
    settings = {
        "VTFPAR_CHECKPOINT": str(tiny_checkpoint),
        "VTFPAR_DEVICE": "cpu",
        "VTFPAR_TORCH_THREADS": "1",
        "VTFPAR_DECODE_WORKERS": str(REQUESTS),  # all three decode at once
        "VTFPAR_DECODE_THREADS": "1",
        "VTFPAR_MAX_QUEUE": str(REQUESTS * TRACKS),
        "VTFPAR_MAX_BATCH_CLIPS": str(BATCH),
        # Generous deadlines: the test measures memory, on a machine that may be busy.
        "VTFPAR_DECODE_TIMEOUT_S": "300",
        "VTFPAR_QUEUE_TIMEOUT_S": "300",
        "VTFPAR_LOG_JSON": "false",
    }
    with AppProcess(settings, tmp_path / "app.log") as app:
        app.wait_ready(timeout_s=120)
        # One request of a full batch first, so that what serving holds whatever the requests (codecs, buffers,
        # the forward pass of a full batch) is in the baseline.
        warm = post(app.url, video, full_frame_tracks(BATCH))
        assert warm.status_code == 200, warm.text
        before = peak_rss(app.process.pid)
        with ThreadPoolExecutor(REQUESTS) as pool:
            answers = list(pool.map(lambda _: post(app.url, video, full_frame_tracks(TRACKS)), range(REQUESTS)))
        after = peak_rss(app.process.pid)
    assert [answer.status_code for answer in answers] == [200] * REQUESTS, [a.text[:300] for a in answers]
    assert all(len(answer.json()["tracks"]) == TRACKS for answer in answers)
    growth = after - before
    print(f"peak RSS {before / MIB:.0f} MiB -> {after / MIB:.0f} MiB: +{growth / MIB:.0f} MiB for {REQUESTS} requests")
    assert growth < 512 * MIB, f"{REQUESTS} requests raised peak RSS by {growth / MIB:.0f} MiB"
