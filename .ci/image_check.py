"""Runs the built image and checks what a user of `docker compose up` relies on (.ci/image-check.sh builds it first):
/health/ready, a /predict answer, the HOG detector in /info, a stream from GStreamer's RTSP server with frames
detected and tracked, a C extension built as Triton builds its launcher, and a clean exit on SIGTERM.

    python .ci/image_check.py --image localhost/vtfpar-serve:check -- --runtime runc --network=host ...

Arguments after ``--`` go to ``podman run``; the container shares the host's network, so the server listens on a
free loopback port and reaches the RTSP camera started here. Each check prints what it saw; the first failing one
prints the container's log and exits non-zero.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.servers import free_port  # noqa: E402
from tests.app.streams import RtspCamera, make_camera, rtsp_available  # noqa: E402

READY_TIMEOUT_S = 180
STREAM_TIMEOUT_S = 60
STOP_TIMEOUT_S = 40  # compose's stop_grace_period is 35 s


class CheckFailed(Exception):
    pass


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.5)


def check_ready(url: str, name: str) -> None:
    def ready():
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
        if state.stdout.strip() != "true":
            raise CheckFailed("the container exited before it was ready")
        return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200

    wait_for(ready, READY_TIMEOUT_S, "/health/ready")
    print("ok: /health/ready answers 200")


def check_predict(url: str, clip: Path) -> None:
    """Any H.264 mp4 is a clip to /predict: the camera's recording will do."""
    with clip.open("rb") as video:
        response = httpx.post(f"{url}/predict", files={"video": ("clip.mp4", video, "video/mp4")}, timeout=60)
    if response.status_code != 200 or not response.json().get("attributes"):
        raise CheckFailed(f"/predict answered {response.status_code}: {response.text[:500]}")
    print(f"ok: /predict answers {len(response.json()['attributes'])} attributes")


def check_info(url: str) -> None:
    info = httpx.get(f"{url}/info", timeout=10).json()
    scene = info.get("scene") or {}
    if not (scene.get("enabled") and scene.get("detector") == "hog"):
        raise CheckFailed(f"/info does not show HOG detection on: {scene}")
    print(f"ok: /info shows detection on with {scene['detector']}")


def check_stream(url: str, camera_url: str) -> None:
    created = httpx.post(f"{url}/streams", json={"name": "image-check", "url": camera_url}, timeout=10)
    if created.status_code != 201:
        raise CheckFailed(f"POST /streams answered {created.status_code}: {created.text[:500]}")
    stream_id = created.json()["id"]

    def processing():
        status = httpx.get(f"{url}/streams/{stream_id}", timeout=10).json()
        if status["state"] == "failed":
            raise CheckFailed(f"the stream failed: {status}")
        return status if status["state"] == "running" and status["fps_processed"] > 0 else None

    status = wait_for(processing, STREAM_TIMEOUT_S, "the RTSP stream's frames to be detected and tracked")
    print(f"ok: the RTSP stream runs, {status['fps_in']:.1f} fps in, {status['fps_processed']:.1f} fps detected")


# What Triton does at its first CUDA compile, short of the GPU: build a C extension against Python.h and load it.
C_EXTENSION = r"""
import os, subprocess, sysconfig, tempfile, importlib.util
folder = tempfile.mkdtemp()
with open(os.path.join(folder, "probe.c"), "w") as source:
    source.write('#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "probe"};\n'
                 'PyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&m); }\n')
library = os.path.join(folder, "probe" + sysconfig.get_config_var("EXT_SUFFIX"))
include = sysconfig.get_paths()["include"]
subprocess.run(["cc", "-shared", "-fPIC", "-I" + include, source.name, "-o", library], check=True)
spec = importlib.util.spec_from_file_location("probe", library)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
"""


def check_c_compiler(name: str) -> None:
    built = subprocess.run(["podman", "exec", name, "python", "-c", C_EXTENSION], capture_output=True, text=True)
    if built.returncode != 0:
        raise CheckFailed(f"the image cannot build a C extension, as Triton must on CUDA: {built.stderr[-1000:]}")
    caches = subprocess.run(["podman", "exec", name, "env"], capture_output=True, text=True).stdout
    for variable in ("TORCHINDUCTOR_CACHE_DIR=/cache/", "TRITON_CACHE_DIR=/cache/"):
        if variable not in caches:
            raise CheckFailed(f"the image does not set {variable}...")
    print("ok: a C extension builds and loads (Triton's launcher), compile caches on /cache")


def check_sigterm(name: str) -> None:
    subprocess.run(["podman", "kill", "--signal", "TERM", name], check=True, capture_output=True)
    started = time.monotonic()
    try:
        waited = subprocess.run(["podman", "wait", name], capture_output=True, text=True, timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"the server did not exit within {STOP_TIMEOUT_S} s of SIGTERM") from None
    code = waited.stdout.strip()
    if code != "0":
        raise CheckFailed(f"the server exited with status {code} on SIGTERM")
    print(f"ok: SIGTERM ends the server with status 0 in {time.monotonic() - started:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("run_flags", nargs="*", help="podman run's flags, after --")
    args = parser.parse_args()
    reason = rtsp_available()
    if reason:
        print(f"image-check: {reason}", file=sys.stderr)
        return 1
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"vtfpar-image-check-{port}"
    with tempfile.TemporaryDirectory() as folder:
        recording = make_camera(Path(folder)).path
        camera = RtspCamera(recording, Path(folder) / "rtsp.log")
        settings = {
            "VTFPAR_HOST": "127.0.0.1",
            "VTFPAR_PORT": str(port),
            "VTFPAR_STREAM_SOURCES": f"rtsp://127.0.0.1:{camera.port}/",
        }
        environment = [flag for key, value in settings.items() for flag in ("--env", f"{key}={value}")]
        started = time.monotonic()
        subprocess.run(
            ["podman", "run", "--detach", "--name", name, *args.run_flags, *environment, args.image],
            check=True,
            capture_output=True,
        )
        try:
            check_ready(url, name)
            print(f"   ready {time.monotonic() - started:.1f} s after podman run")
            check_predict(url, recording)
            check_info(url)
            check_stream(url, camera.url)
            check_c_compiler(name)
            check_sigterm(name)
        except CheckFailed as failed:
            log = subprocess.run(["podman", "logs", "--tail", "60", name], capture_output=True, text=True)
            print(f"{log.stdout}{log.stderr}\nimage-check: {failed}", file=sys.stderr)
            return 1
        finally:
            camera.stop()
            subprocess.run(["podman", "rm", "--force", "--time", "5", name], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
