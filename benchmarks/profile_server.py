"""Where the server's CPU goes per request outside the model: the free-model server (``benchmarks.free_model_server``)
loaded by 4 clients posting the suite's 2-s 128x256 H.264 clip.

    python -m benchmarks.profile_server --flame DIR/flame.svg            # py-spy flame graph (and DIR/flame.png)
    python -m benchmarks.profile_server --compare 5db73dd --rounds 3     # CPU ms per request: that commit vs this tree

``--compare`` alternates servers of the two trees round by round in one session, so the ratio holds on a busy
machine where absolute figures do not. The flame graph needs py-spy (``pip install py-spy``); its PNG, headless
Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from model import create_model, get_config, load_schema, save_checkpoint

from .load import generate_load, synthetic_clips
from .servers import AppProcess
from .suite import CLIP, ROOT, process_cpu_s


def start(tree: Path, checkpoint: Path, log: Path) -> AppProcess:
    env = {
        "VTFPAR_CHECKPOINT": str(checkpoint),
        "VTFPAR_DEVICE": "cpu",
        "VTFPAR_TORCH_THREADS": "1",
        "VTFPAR_COMPILE": "off",
        "VTFPAR_LOG_LEVEL": "warning",
        "PYTHONPATH": str(tree),
        "HF_HUB_OFFLINE": "1",
    }
    return AppProcess(env, log, cwd=tree, module="benchmarks.free_model_server")


def cpu_ms_per_request(server: AppProcess, clip: bytes, requests: int) -> tuple[float, float]:
    """Server CPU ms per answered request, and the event-loop thread's share, after 20 warm-up requests."""
    server.wait_ready(timeout_s=600)
    pid = server.process.pid
    asyncio.run(generate_load(server.url, [clip], 4, requests=20))
    total, loop = process_cpu_s(pid), process_cpu_s(pid, pid)
    answered = max(1, len(asyncio.run(generate_load(server.url, [clip], 4, requests=requests)).latencies))
    return 1000 * (process_cpu_s(pid) - total) / answered, 1000 * (process_cpu_s(pid, pid) - loop) / answered


def flame(out: Path, checkpoint: Path, clip: bytes, seconds: int, folder: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with start(ROOT, checkpoint, folder / "server.log") as server:
        server.wait_ready(timeout_s=600)
        asyncio.run(generate_load(server.url, [clip], 4, requests=20))
        command = ["py-spy", "record", "--pid", str(server.process.pid), "--native", "-r", "200", "-d", str(seconds)]
        spy = subprocess.Popen([*command, "-o", str(out), "--format", "flamegraph"])
        asyncio.run(generate_load(server.url, [clip], 4, seconds=seconds + 2))
        if spy.wait() != 0:
            raise SystemExit(f"py-spy failed (exit status {spy.returncode})")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:  # ImageMagick's SVG reader needs a delegate that is often missing; Chromium renders py-spy's SVG
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--hide-scrollbars", "--window-size=1200,1066",
             f"--screenshot={out.with_suffix('.png')}", out.resolve().as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip


def compare(base: str, checkpoint: Path, clip: bytes, rounds: int, requests: int, folder: Path) -> None:
    base_tree = folder / "base"
    base_tree.mkdir()
    archive = subprocess.run(["git", "archive", base], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
    trees = {base: base_tree, "this tree": ROOT}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for round_ in range(rounds):
        for name, tree in trees.items():
            with start(tree, checkpoint, folder / "server.log") as server:
                results[name].append(cpu_ms_per_request(server, clip, requests))
            total, loop = results[name][-1]
            print(f"round {round_ + 1} {name}: {total:.2f} ms CPU per request (event loop {loop:.2f})", flush=True)
    means = {name: [sum(column) / len(column) for column in zip(*rows, strict=True)] for name, rows in results.items()}
    for name, (total, loop) in means.items():
        print(f"{name}: mean {total:.2f} ms CPU per request (event loop {loop:.2f})")
    print(f"this tree / {base}: {means['this tree'][0] / means[base][0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flame", type=Path, help="write a py-spy flame graph (SVG, and a PNG beside it)")
    parser.add_argument("--seconds", type=int, default=20, help="how long the flame graph records")
    parser.add_argument("--compare", metavar="REV", help="a git revision to compare this tree's CPU per request with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="requests per server and round")
    args = parser.parse_args()
    if not args.flame and not args.compare:
        parser.error("give --flame, --compare or both")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        torch.manual_seed(0)
        checkpoint = folder / "vtfpar-demo.safetensors"
        save_checkpoint(create_model(get_config("vtfpar-demo"), load_schema("mars")), checkpoint)
        clip = synthetic_clips(1, CLIP["seconds"], CLIP["width"], CLIP["height"], CLIP["fps"])[0]
        if args.flame:
            flame(args.flame, checkpoint, clip, args.seconds, folder)
        if args.compare:
            compare(args.compare, checkpoint, clip, args.rounds, args.requests, folder)


if __name__ == "__main__":
    main()
