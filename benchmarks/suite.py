"""One command measures the service's throughput story and writes it as DIR/results.json and DIR/results.md:

- the bare model (the service's own ``ModelRunner.predict``): clips/s and ms per batch at batch sizes 1, 2, 4, ...,
  eager and compiled, and the GPU memory each takes;
- the same model exported to ONNX (``model.export``) and run by the service's ``OnnxRunner`` in ONNX Runtime: the
  CPU provider, or on CUDA the TensorRT and CUDA providers (with ``onnxruntime-gpu``), at the same batch sizes;
- decoding: wall and CPU ms per clip for a 2-s 256x128 H.264 clip (demux, decode, sampling, preparation);
- serving over HTTP (``python -m app`` started here): clips/s and p50/p95/p99 latency at several concurrencies,
  batching on (VTFPAR_MAX_BATCH_CLIPS) and off (1), with the server's CPU per request;
- the server's CPU per request outside the model: the same service with the model's forward returning zeros
  (``benchmarks.free_model_server``), from the server process's own CPU time;
- the ratios that matter, all measured in this one run: served / bare model, batching on / off, compiled / eager.

    python -m benchmarks.suite --preset tiny --quick --out /tmp/bench            # CPU, about a minute
    python -m benchmarks.suite --device auto --preset vtfpar-b16 --out DIR       # a GPU host

The backbone is random unless --checkpoint is given: speed does not depend on the weights, and nothing is
downloaded. Server CPU comes from /proc (Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from app.compiled import resolve_compile  # noqa: E402
from app.decoding import DecodeLimits, decode_video  # noqa: E402
from app.inference import (  # noqa: E402
    ModelRunner,
    Runner,
    ServedModel,
    resolve_device,
    resolve_service_precision,
    warmup_batch_sizes,
)
from app.settings import CUDA_MAX_BATCH_CLIPS, Settings  # noqa: E402
from model import VTFPAR, create_model, get_config, load_checkpoint, load_schema, save_checkpoint  # noqa: E402

from .load import LoadResult, generate_load, synthetic_clips  # noqa: E402
from .servers import AppProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIP: dict = {"codec": "h264", "width": 128, "height": 256, "seconds": 2.0, "fps": 25}  # a MARS-sized crop, 2 s
# How long each part runs: --quick is sized for CI (well under 2 minutes on 2 cores, compiling nothing).


@dataclass(frozen=True)
class Profile:
    """How long each part runs."""

    model_s: float  # per batch size
    serve_s: float  # per concurrency
    concurrency: list[int]
    clips: int  # distinct clips
    decode_runs: int
    cpu_requests: int
    max_batch: int | None  # None: the service's default on the device
    threads: int | None  # torch threads; None: torch's default


# --quick is sized for CI (about a minute on 2 busy cores): small batches, short loads, one torch thread (on 2 shared
# cores torch's two OpenMP threads stall each other: 10-100x slower), nothing compiled.
PROFILES = {
    "quick": Profile(0.3, 1.5, [1, 4], clips=4, decode_runs=10, cpu_requests=60, max_batch=4, threads=1),
    "full": Profile(2.0, 8.0, [1, 4, 16], clips=16, decode_runs=100, cpu_requests=400, max_batch=None, threads=None),
}
GAIN_CONCURRENCY = 16  # the batching-gain goal is stated at 16 concurrent clients


def machine_info(device: torch.device) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "")
    info: dict = {
        "hostname": socket.gethostname(),
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "gpu": None,
        "gpu_memory_gib": None,
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1))
    return info


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def process_cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (or of one of its threads), from /proc."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the bare model ---------------------------------------------------------------------------------------------


def build_model(preset: str, checkpoint: str | None, device: torch.device) -> VTFPAR:
    if checkpoint:
        return load_checkpoint(checkpoint, device=device).model
    torch.manual_seed(0)
    return create_model(get_config(preset, clip_weights=None), load_schema("mars"), device=device)


def make_runner(model: VTFPAR, device: torch.device, precision: str, compiled: bool) -> ModelRunner:
    served = ServedModel(name=model.config.name, digest="random", schema=model.schema.name, demo=False, checkpoint="")
    return ModelRunner(model, served, device, precision, compile=compiled)


def measure_model(runner: Runner, batch: int, seconds: float, min_iterations: int = 3) -> dict:
    """Back-to-back forward passes at one batch size (after two warm-up passes), on clips prepared once as the
    decode threads prepare them (on CUDA the batch-wise resizing then happens inside predict, as in the service)."""
    frames = [np.zeros((CLIP["height"], CLIP["width"], 3), dtype=np.uint8)] * runner.description.frames_per_clip
    clips = [runner.prepare(frames) for _ in range(batch)]
    for _ in range(2):
        runner.predict(clips)
    cuda = runner.device.type == "cuda" and runner.description.runtime.startswith("torch")  # torch's allocator
    if cuda:
        torch.cuda.reset_peak_memory_stats(runner.device)
    iterations, start = 0, time.perf_counter()
    while iterations < min_iterations or time.perf_counter() - start < seconds:
        runner.predict(clips)  # ends with the copy to the host: synchronous on CUDA too
        iterations += 1
    elapsed = time.perf_counter() - start
    return {
        "clips_per_s": iterations * batch / elapsed,
        "ms_per_batch": 1000 * elapsed / iterations,
        "gpu_memory_mib": torch.cuda.max_memory_allocated(runner.device) / 2**20 if cuda else None,
    }


def model_section(model: VTFPAR, device, precision: str, compiled: bool, sizes: list[int], seconds: float) -> dict:
    section: dict = {"batch_sizes": sizes, "mode": "compiled" if compiled else "eager"}
    eager = make_runner(model, device, precision, compiled=False)
    section["eager"] = _by_size({size: measure_model(eager, size, seconds) for size in sizes})
    section["compiled"] = None
    if compiled:
        runner = make_runner(model, device, precision, compiled=True)
        start = time.perf_counter()
        runner.warm_up(sizes)
        section["compile_s"] = time.perf_counter() - start
        section["compiled"] = _by_size({size: measure_model(runner, size, seconds) for size in sizes})
    served = section["compiled"] or section["eager"]
    section["clips_per_s"], section["ms_per_batch"] = served["clips_per_s"], served["ms_per_batch"]
    section["gpu_memory_mib"] = served["gpu_memory_mib"] if device.type == "cuda" else None
    return section


def onnx_section(
    checkpoint: str, folder: Path, device: torch.device, sizes: list[int], seconds: float, threads: int | None
) -> dict:
    """The checkpoint exported to ONNX and run by the service's ``OnnxRunner``, per provider: CPU, or on CUDA
    TensorRT then CUDA (a provider this onnxruntime cannot load runs as the next one and is measured once)."""
    from app.onnx_runner import OnnxRunner
    from model.export import export_onnx

    path = folder / "model.onnx"
    start = time.perf_counter()
    export_onnx(load_checkpoint(checkpoint), path)
    section: dict = {"export_s": time.perf_counter() - start, "providers": {}}
    variants = {"tensorrt": True, "cuda": False} if device.type == "cuda" else {"cpu": False}
    for name, tensorrt in variants.items():
        runner = OnnxRunner.load(
            Settings(
                checkpoint=path,
                device=device.type,
                torch_threads=threads,
                onnx_tensorrt=tensorrt,
                max_batch_clips=sizes[-1],
            )
        )
        runtime = runner.description.runtime
        if any(run["runtime"] == runtime for run in section["providers"].values()):
            continue
        start = time.perf_counter()
        runner.warm_up(sizes)  # TensorRT builds its engine here
        warm_up_s = time.perf_counter() - start
        measured = _by_size({size: measure_model(runner, size, seconds) for size in sizes})
        section["providers"][name] = {"runtime": runtime, "warm_up_s": warm_up_s} | measured
    return section


def _by_size(results: dict[int, dict]) -> dict:
    """{size: {metric: value}} -> {metric: {size: value}} (sizes as JSON keys)."""
    metrics = next(iter(results.values())).keys()
    return {metric: {str(size): result[metric] for size, result in results.items()} for metric in metrics}


# --- decoding ---------------------------------------------------------------------------------------------------


def decode_section(runner: ModelRunner, clip: bytes, runs: int) -> dict:
    """What one decode thread does for one upload: demux, decode, sampling, the runner's preparation."""
    import io

    limits = DecodeLimits.from_settings(Settings())
    wall, cpu, decoded = [], [], 0
    for _ in range(runs + 2):
        start, start_cpu = time.perf_counter(), time.thread_time()
        media = decode_video(io.BytesIO(clip), runner.frames_per_clip, limits)
        runner.prepare(media.frames)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        decoded = media.frames_decoded
    wall, cpu = wall[2:], cpu[2:]  # the first two warm caches up
    return {
        "ms_per_clip": 1000 * float(np.median(wall)),
        "cpu_ms_per_clip": 1000 * float(np.median(cpu)),
        "frames_decoded": decoded,
        "frames_sampled": runner.frames_per_clip,
    }


# --- serving ----------------------------------------------------------------------------------------------------


def server_env(checkpoint: str, args, device: torch.device, **settings: str) -> dict[str, str]:
    env = {
        "VTFPAR_CHECKPOINT": checkpoint,
        "VTFPAR_DEVICE": device.type,
        "VTFPAR_PRECISION": args.precision,
        "VTFPAR_COMPILE": args.compile,
        "VTFPAR_MAX_QUEUE": str(max(64, 4 * max(args.concurrency))),
        "VTFPAR_MAX_CONCURRENT_REQUESTS": str(max(128, 4 * max(args.concurrency))),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **settings,
    }
    if args.threads:
        env["VTFPAR_TORCH_THREADS"] = str(args.threads)
    return env


def load_server(env: dict[str, str], clips: list[bytes], concurrency: list[int], seconds: float, log: Path) -> dict:
    """Start a server, load it at each concurrency; results with the server's CPU per answered request."""
    runs = {}
    with AppProcess(env, log, cwd=ROOT) as server:
        server.wait_ready(timeout_s=1800)
        pid = server.process.pid
        for clients in concurrency:
            before = process_cpu_s(pid)
            result = asyncio.run(generate_load(server.url, clips, clients, seconds))
            runs[clients] = result.summary() | {
                "server_cpu_ms_per_request": 1000 * (process_cpu_s(pid) - before) / max(1, len(result.latencies))
            }
        gpu_reserved = _gauge(server.url, "vtfpar_gpu_memory_reserved_bytes")
    return {
        metric: {str(clients): run[metric] for clients, run in runs.items()} for metric in next(iter(runs.values()))
    } | {"gpu_memory_reserved_mib": gpu_reserved / 2**20 if gpu_reserved is not None else None}


def _gauge(url: str, name: str) -> float | None:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == name:
            return family.samples[0].value
    return None


def cpu_section(env: dict[str, str], clip: bytes, requests: int, log: Path) -> dict:
    """Server CPU per request outside the model: the service with a free forward pass, one torch thread, loaded
    by 4 clients with one clip; the event loop thread (the main thread) is reported on its own."""
    env = env | {"VTFPAR_TORCH_THREADS": "1", "VTFPAR_COMPILE": "off"}
    with AppProcess(env, log, cwd=ROOT, module="benchmarks.free_model_server") as server:
        server.wait_ready(timeout_s=600)
        pid = server.process.pid
        asyncio.run(generate_load(server.url, [clip], 4, requests=20))
        total, loop = process_cpu_s(pid), process_cpu_s(pid, pid)
        result: LoadResult = asyncio.run(generate_load(server.url, [clip], 4, requests=requests))
        answered = max(1, len(result.latencies))
        return {
            "per_request": 1000 * (process_cpu_s(pid) - total) / answered,
            "event_loop_per_request": 1000 * (process_cpu_s(pid, pid) - loop) / answered,
            "requests": len(result.latencies),
            "errors": sum(result.errors.values()),
        }


# --- the run ----------------------------------------------------------------------------------------------------


def run(args) -> dict:
    started = time.time()

    def say(text: str) -> None:
        print(f"[{time.time() - started:5.0f} s] {text}", flush=True)

    profile = PROFILES["quick" if args.quick else "full"]
    args.concurrency = args.concurrency or profile.concurrency + ([64] if args.device_type == "cuda" else [])
    device = resolve_device(args.device)
    precision = resolve_service_precision(args.precision, device)
    compiled = resolve_compile(args.compile, device) and not args.quick
    args.threads = args.threads or profile.threads
    if args.threads:
        torch.set_num_threads(args.threads)
    default_batch = CUDA_MAX_BATCH_CLIPS if device.type == "cuda" else Settings().max_batch_clips
    max_batch = args.max_batch or profile.max_batch or default_batch
    sizes = warmup_batch_sizes(max_batch)
    results: dict = {
        "suite": {
            "command": " ".join(["python -m benchmarks.suite", *sys.argv[1:]]),
            "preset": args.preset,
            "checkpoint": args.checkpoint,
            "quick": args.quick,
            "precision": precision,
            "compile": compiled,
            "compile_note": "not in --quick (compiling takes minutes on CPU)" if args.quick else None,
            "max_batch_clips": max_batch,
            "torch_threads": torch.get_num_threads(),
            "clip": CLIP | {"clips": profile.clips},
        },
        "machine": machine_info(device),
    }
    say(f"building {args.preset} and {profile.clips} clips")
    model = build_model(args.preset, args.checkpoint, device)
    clips = synthetic_clips(profile.clips, CLIP["seconds"], CLIP["width"], CLIP["height"], CLIP["fps"])
    results["suite"]["clip"]["bytes_mean"] = float(np.mean([len(c) for c in clips]))
    say(f"the bare model at batch sizes {sizes} ({'eager and compiled' if compiled else 'eager'})")
    results["model"] = model_section(model, device, precision, compiled, sizes, profile.model_s)
    say("decoding")
    results["decode"] = decode_section(
        make_runner(model, device, precision, compiled=False), clips[0], profile.decode_runs
    )

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or str(Path(folder) / f"{args.preset}-random.safetensors")
        if not args.checkpoint:
            save_checkpoint(model, checkpoint)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        compile_setting = "on" if compiled else "off"
        serving = {}
        for name, batch in (("on", max_batch), ("off", 1)):
            say(f"serving with batching {name} (VTFPAR_MAX_BATCH_CLIPS={batch}) at concurrency {args.concurrency}")
            env = server_env(
                checkpoint, args, device, VTFPAR_MAX_BATCH_CLIPS=str(batch), VTFPAR_COMPILE=compile_setting
            )
            serving[name] = {"max_batch_clips": batch} | load_server(
                env, clips, args.concurrency, profile.serve_s, Path(folder) / f"server-{name}.log"
            )
        results["serving"] = serving
        if args.onnx:
            say("ONNX Runtime: export, then the bare model at the same batch sizes")
            onnx = onnx_section(checkpoint, Path(folder), device, sizes, profile.model_s, args.threads)
            results["model"]["onnx"] = onnx
        say("server CPU per request outside the model (free forward pass)")
        env = server_env(checkpoint, args, device, VTFPAR_MAX_BATCH_CLIPS=str(max_batch))
        cpu = cpu_section(env, clips[0], profile.cpu_requests, Path(folder) / "server-free.log")
    say("done")
    results["cpu_ms_per_request"] = cpu["per_request"]
    results["cpu"] = cpu
    results["ratios"] = ratios(results, max_batch)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["suite"]["seconds"] = time.time() - started
    return results


def ratios(results: dict, max_batch: int) -> dict:
    on, off = results["serving"]["on"]["clips_per_s"], results["serving"]["off"]["clips_per_s"]
    busiest = max(on, key=int)
    gain_at = str(GAIN_CONCURRENCY) if str(GAIN_CONCURRENCY) in on else busiest
    model = results["model"]
    compiled_over_eager = None
    if model["compiled"]:
        eager, compiled = model["eager"]["clips_per_s"], model["compiled"]["clips_per_s"]
        compiled_over_eager = {size: compiled[size] / eager[size] for size in eager}
    onnx_over_eager = None
    if model.get("onnx"):
        eager = model["eager"]["clips_per_s"]
        onnx_over_eager = {
            name: {size: run["clips_per_s"][size] / eager[size] for size in eager}
            for name, run in model["onnx"]["providers"].items()
        }
    return {
        "served_over_bare": on[busiest] / model["clips_per_s"][str(max_batch)],
        "served_over_bare_at": {"concurrency": int(busiest), "bare_batch": max_batch},
        "batching_gain": on[gain_at] / off[gain_at],
        "batching_gain_at_concurrency": int(gain_at),
        "compiled_over_eager": compiled_over_eager,
        "onnx_over_eager": onnx_over_eager,
    }


# --- the report -------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    suite, machine, model = results["suite"], results["machine"], results["model"]
    compiled = model["compiled"]
    lines = [
        f"# Benchmark: {suite['preset']} on {machine['gpu'] or machine['cpu']}",
        "",
        f"`{suite['command']}`, {suite['seconds']:.0f} s. {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['gpu'] or 'no GPU'}, torch {machine['torch']}, CUDA {machine['cuda']}, precision "
        f"{suite['precision']}. Load average (1 min) {machine['load_average_at_start'][0]:.1f} at the start, "
        f"{machine['load_average_at_end'][0]:.1f} at the end.",
        "",
        f"Clips: {suite['clip']['clips']} synthetic H.264 mp4, {suite['clip']['width']}x{suite['clip']['height']}, "
        f"{suite['clip']['seconds']:g} s at {suite['clip']['fps']} fps, {suite['clip']['bytes_mean'] / 1024:.0f} KiB.",
        "",
        "## Ratios (one run)",
        "",
        "| ratio | value |",
        "|---|---|",
        f"| served / bare model (batching on, concurrency {results['ratios']['served_over_bare_at']['concurrency']}, "
        f"bare at batch {results['ratios']['served_over_bare_at']['bare_batch']}) | "
        f"{results['ratios']['served_over_bare']:.2f} |",
        f"| batching gain (on / off, concurrency {results['ratios']['batching_gain_at_concurrency']}) | "
        f"{results['ratios']['batching_gain']:.2f}x |",
        f"| server CPU per request outside the model | {results['cpu_ms_per_request']:.2f} ms "
        f"(event loop {results['cpu']['event_loop_per_request']:.2f} ms) |",
        "",
        "## Bare model (`ModelRunner.predict`)",
        "",
        "| batch | eager clips/s | eager ms/batch | compiled clips/s | compiled ms/batch | GPU MiB |",
        "|---|---|---|---|---|---|",
    ]
    for size in model["eager"]["clips_per_s"]:
        eager = model["eager"]
        row = [size, f"{eager['clips_per_s'][size]:.1f}", f"{eager['ms_per_batch'][size]:.2f}"]
        row += (
            [f"{compiled['clips_per_s'][size]:.1f}", f"{compiled['ms_per_batch'][size]:.2f}"] if compiled else ["-"] * 2
        )
        memory = model["gpu_memory_mib"]
        row.append(f"{memory[size]:.0f}" if memory else "-")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    if compiled:
        lines += ["", f"Compiling (warm-up of every size): {model['compile_s']:.0f} s."]
    elif suite["compile_note"]:
        lines += ["", f"Compiled: {suite['compile_note']}."]
    lines += onnx_markdown(model.get("onnx"), model["eager"]["clips_per_s"])
    decode = results["decode"]
    lines += [
        "",
        "## Decoding one clip (demux, decode, sampling, preparation; one thread)",
        "",
        f"{decode['ms_per_clip']:.2f} ms wall, {decode['cpu_ms_per_clip']:.2f} ms CPU; "
        f"{decode['frames_decoded']} frames decoded for {decode['frames_sampled']} sampled.",
        "",
        "## Serving over HTTP",
        "",
        "| batching | concurrency | clips/s | p50 ms | p95 ms | p99 ms | mean batch | server CPU ms/request | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in results["serving"].items():
        for clients in run["clips_per_s"]:
            errors = ", ".join(f"{k}: {v}" for k, v in run["errors"][clients].items()) or "0"
            lines.append(
                f"| {name} ({run['max_batch_clips']}) | {clients} | {run['clips_per_s'][clients]:.1f} | "
                f"{run['p50_ms'][clients]:.1f} | {run['p95_ms'][clients]:.1f} | {run['p99_ms'][clients]:.1f} | "
                f"{run['mean_batch'][clients]:.2f} | {run['server_cpu_ms_per_request'][clients]:.2f} | {errors} |"
            )
    return "\n".join(lines) + "\n"


def onnx_markdown(onnx: dict | None, eager: dict) -> list[str]:
    if not onnx:
        return []
    lines = ["", f"## ONNX Runtime (the same model exported: {onnx['export_s']:.0f} s)", ""]
    lines += ["| provider | batch | clips/s | ms/batch | / torch eager |", "|---|---|---|---|---|"]
    for run in onnx["providers"].values():
        for size, clips_per_s in run["clips_per_s"].items():
            lines.append(
                f"| {run['runtime']} | {size} | {clips_per_s:.1f} | {run['ms_per_batch'][size]:.2f} | "
                f"{clips_per_s / eager[size]:.2f}x |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for results.json and results.md")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", help="measure this checkpoint instead of a random model of --preset")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="as VTFPAR_COMPILE")
    parser.add_argument("--quick", action="store_true", help="CI-sized: short runs, nothing compiled")
    parser.add_argument("--max-batch", type=int, help="largest batch (default: the service's default on the device)")
    parser.add_argument("--concurrency", type=lambda text: [int(v) for v in text.split(",")], help="e.g. 1,4,16")
    parser.add_argument("--threads", type=int, help="torch CPU threads, here and in the servers")
    parser.add_argument(
        "--no-onnx", dest="onnx", action="store_false", help="skip ONNX Runtime (needs the onnx extra otherwise)"
    )
    args = parser.parse_args(argv)
    args.device_type = resolve_device(args.device).type
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
