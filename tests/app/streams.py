"""What the live-stream tests share: a synthetic camera scene whose frames carry their own index (a barcode the
codec cannot blur away), a detector that reads it and answers the scene's ground truth (HOG cannot see drawn
people), an events reader, and GStreamer's RTSP server as the camera."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.media import encode
from benchmarks.servers import free_port
from training.synthetic.scenes import make_scene

FPS = 10
BITS, BLOCK = 10, 16  # frame index in 10 blocks of 16x16 px along the top edge
MIN_VISIBILITY = 0.4
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).parents[1] / "rtsp_server.py"


@dataclass
class Camera:
    path: Path  # the H.264 mp4
    boxes: dict[int, np.ndarray]  # frame index -> ground-truth boxes (x0, y0, x1, y1) of visible walkers
    frames: int
    track_ids: set[int]


def make_camera(folder: Path, seconds: float = 10.0, walkers: int = 3, seed: int = 11) -> Camera:
    frames = round(seconds * FPS)
    scene = make_scene(seed=seed, walkers=walkers, num_frames=frames, size=(192, 256))
    pictures = [_with_index(frame, index) for index, frame in enumerate(scene.frames)]
    path = folder / "camera.mp4"
    encode("mp4", pictures, fps=FPS, path=path, options={"movflags": "faststart"})
    boxes: dict[int, list] = {}
    for box in scene.boxes:
        if box.visibility >= MIN_VISIBILITY:
            boxes.setdefault(box.frame, []).append([box.left, box.top, box.left + box.width, box.top + box.height])
    return Camera(
        path,
        {i: np.asarray(b, np.float32).reshape(-1, 4) for i, b in boxes.items()},
        frames,
        {box.track_id for box in scene.boxes},
    )


def _with_index(frame: np.ndarray, index: int) -> np.ndarray:
    marked = frame.copy()
    for bit in range(BITS):
        marked[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if index >> bit & 1 else 0
    return marked


def read_index(frame: np.ndarray) -> int:
    return sum(
        1 << bit for bit in range(BITS) if frame[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2].mean() > 128
    )


class IndexedDetector:
    """The scene's ground truth for whatever frame it is shown, found by the index the frame carries."""

    name = "ground-truth stub"

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.shown: list[int] = []

    def detect(self, frames):
        found = []
        for frame in frames:
            index = read_index(frame)
            self.shown.append(index)
            boxes = self.camera.boxes.get(index, np.zeros((0, 4), np.float32))
            found.append((boxes, np.full(len(boxes), 0.9, np.float32)))
        return found


class EventsReader:
    """Reads a stream's server-sent events in a thread, as (event, data) pairs, until the server closes them."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        self.events: list[tuple[str, dict]] = []
        self.closed = threading.Event()
        self.status: int | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=120)) as response:
                self.status = response.status_code
                kind = None
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind is not None:
                        self.events.append((kind, json.loads(line.split(":", 1)[1])))
                        kind = None
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()

    def of(self, kind: str) -> list[dict]:
        return [data for event, data in list(self.events) if event == kind]


def rtsp_available() -> str | None:
    """Why GStreamer's RTSP server cannot run here, or None."""
    if shutil.which(SYSTEM_PYTHON) is None:
        return f"no {SYSTEM_PYTHON} (the system python with python3-gi)"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"GStreamer's RTSP server is missing (python3-gi, gir1.2-gst-rtsp-server-1.0): {result.stderr[-300:]}"
    return None


class RtspCamera:
    """GStreamer's RTSP server playing ``video`` on 127.0.0.1:``port``; ``stop`` takes the camera away."""

    def __init__(self, video: Path, log: Path, port: int | None = None) -> None:
        reason = rtsp_available()
        if reason:
            pytest.skip(reason)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.log = log
        with log.open("a") as output:
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, str(RTSP_SERVER), str(video), "--port", str(self.port)],
                stdout=subprocess.PIPE,
                stderr=output,
                text=True,
            )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError(f"the RTSP server did not start:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
