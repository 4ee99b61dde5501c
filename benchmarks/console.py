"""The console on moving footage with the built-in demo model: makes ``docs/console.png`` and prints the console's
figures (time from "Add camera" to the card's first picture, the requests the page keeps in flight).

A synthetic street scene (``vtfpar scenes``) plays as a camera (a local recording the service reads at 10 fps)
while three other scenes are stored with their ground-truth tracks (``/predict/tracks?store=true``); headless
Chromium (Debian's, driven by Playwright) adds the camera from the page, waits for its people, runs a search and
takes the picture::

    python -m benchmarks.console --out docs/console.png

The camera's people are found by a stand-in detector that knows the scene's ground truth (it recognises each frame
among the scene's own): OpenCV's HOG, the built-in CPU detector, does not see drawn walkers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import uvicorn

from app.main import create_app
from app.settings import Settings

from .media import encode
from .servers import free_port, wait_until_ok

CHROMIUM = "/usr/bin/chromium"
FPS = 10
SIZE = (288, 384)  # height, width of the camera's picture
TINY = (12, 16)  # frames are recognised at this size
SENTENCES = ["a person with a bag and short trousers", "someone walking in a white top", "a person walking"]


def make_scenes(out: Path, scenes: int, walkers: int, frames: int, seed: int) -> list[Path]:
    """``vtfpar scenes``' folders (scene.mp4 and its MOT ground truth gt.txt)."""
    command = ["-m", "vtfpar", "scenes", "--out", str(out), "--scenes", str(scenes), "--walkers", str(walkers)]
    size = f"{SIZE[0]}x{SIZE[1]}"
    subprocess.run([sys.executable, *command, "--frames", str(frames), "--size", size, "--seed", str(seed)], check=True)
    return sorted(out.glob("scene-*"))


def frames_of(video: Path) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


class SceneDetector:
    """A scene's ground-truth boxes for whichever of its frames it is shown (the nearest at 16x12 pixels)."""

    name = "scene ground truth"

    def __init__(self, frames: list[np.ndarray], mot: Path) -> None:
        self.tiny = np.stack([self._tiny(frame) for frame in frames])
        self.boxes: dict[int, list] = {}
        for line in mot.read_text().splitlines():
            frame, _, left, top, width, height, _, _, visibility = (float(v) for v in line.split(","))
            if visibility >= 0.4:
                self.boxes.setdefault(int(frame) - 1, []).append([left, top, left + width, top + height])

    @staticmethod
    def _tiny(frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, TINY[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)

    def detect(self, frames):
        found = []
        for frame in frames:
            index = int(np.argmin(((self.tiny - self._tiny(frame)) ** 2).sum(axis=(1, 2, 3))))
            boxes = np.asarray(self.boxes.get(index, []), np.float32).reshape(-1, 4)
            found.append((boxes, np.full(len(boxes), 0.9, np.float32)))
        return found


def store_scenes(url: str, scenes: list[Path]) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    for number, (scene, camera) in enumerate(zip(scenes, ["gate-3", "hall", "gate-3"], strict=True)):
        files = {
            "video": ("scene.mp4", (scene / "scene.mp4").read_bytes()),
            "tracks": ("gt.txt", (scene / "gt.txt").read_bytes()),
        }
        moment = (start + timedelta(minutes=20 * number)).isoformat()
        params = {"store": "true", "camera": camera, "start": moment}
        httpx.post(f"{url}/predict/tracks", files=files, params=params, timeout=120).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/console.png"))
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the camera's footage")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (camera,) = make_scenes(folder / "camera", 1, walkers=8, frames=round(args.seconds * FPS), seed=21)
        frames = frames_of(camera / "scene.mp4")
        recording = folder / "street.mp4"  # played at 10 fps: the scene's walkers at a calmer pace
        encode("mp4", frames, fps=FPS, path=recording, options={"movflags": "faststart"})
        settings = Settings(
            device="cpu",
            host="127.0.0.1",
            port=free_port(),
            data_dir=folder / "data",
            stream_sources=(f"file://{folder}/",),
            stream_detection_interval=2,
            stream_update_s=1.0,
            log_json=False,
            log_level="warning",
        )
        app = create_app(settings, detector=SceneDetector(frames, camera / "gt.txt"))
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{settings.port}"
        try:
            wait_until_ok(f"{url}/health/ready", alive=thread.is_alive, timeout_s=120)
            store_scenes(url, make_scenes(folder / "stored", 3, walkers=4, frames=40, seed=40))
            sentence = next(  # a search the stored tracks answer, so that the picture shows ranked results
                (q for q in SENTENCES if len(httpx.get(f"{url}/tracks", params={"q": q}).json()["tracks"]) >= 3),
                SENTENCES[-1],
            )
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                in_flight: dict = {}
                page.on("request", lambda r: in_flight.__setitem__(r, time.monotonic()))
                page.on("requestfinished", lambda r: in_flight.pop(r, None))
                page.on("requestfailed", lambda r: in_flight.pop(r, None))
                page.goto(f"{url}/ui/")
                page.fill("#camera-name", "street")
                page.fill("#camera-url", recording.as_uri())
                clicked = time.monotonic()
                page.click("#camera-add")
                page.wait_for_function("document.querySelector('.stream img[src^=\"blob:\"]')", timeout=60_000)
                first_picture_s = time.monotonic() - clicked
                page.wait_for_function("document.querySelectorAll('.stream .people li').length >= 2", timeout=60_000)
                page.fill("#sentence", sentence)
                page.click("#search-button")
                page.wait_for_function("document.querySelector('#tracks-title').textContent.startsWith('Search')")
                page.wait_for_function(
                    "[...document.querySelectorAll('#tracks .track img')].every(i => i.complete && i.naturalWidth)"
                )
                most = 0
                for _ in range(50):  # 5 s
                    page.wait_for_timeout(100)
                    most = max(most, len(in_flight))
                page.wait_for_function(
                    "[...document.querySelectorAll('.stream .people li')].some(li => !li.textContent.includes('no "
                    "attributes'))"
                )
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
            print(
                f"first picture {first_picture_s:.1f} s after 'Add camera'; requests in flight at most {most} "
                "(one camera); the picture: " + str(args.out)
            )
        finally:
            server.should_exit = True
            thread.join(30)


if __name__ == "__main__":
    main()
