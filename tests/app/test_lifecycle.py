"""Readiness, backpressure and shutdown, against real servers whose model can be held mid-batch."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
import torch

from app.main import create_app
from benchmarks.media import encode, frames
from benchmarks.servers import AppProcess

from .harness import RunningServer, make_settings, serving

CLIP = encode("avi", frames(5, width=32, height=32))


class GatedRunner:
    """Wraps the real runner; a batch (``predict_embedded``, what the batcher runs) and ``warm_up`` wait for their
    gates to open."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batch_gate, self.warmup_gate = threading.Event(), threading.Event()
        self.batch_gate.set()
        self.warmup_gate.set()
        self.in_batch = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_embedded(self, clips):
        self.in_batch.set()
        assert self.batch_gate.wait(20)
        return self.inner.predict_embedded(clips)

    def warm_up(self, sizes):
        assert self.warmup_gate.wait(20)
        self.inner.warm_up(sizes)


def post(url: str, **kw) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"video": ("c.avi", CLIP)}, timeout=30, **kw)


def in_background(fn, *args) -> dict:
    """Run fn in a thread; the returned dict gets its result under "value"."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn(*args)), daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_not_ready_until_warmed_up(tiny_checkpoint, runner):
    gated = GatedRunner(runner)
    gated.warmup_gate.clear()
    with serving(make_settings(tiny_checkpoint), runner=gated, wait_ready=False) as running:
        assert httpx.get(f"{running.url}/health/live").status_code == 200
        ready = httpx.get(f"{running.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        refused = post(running.url)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
        assert "Retry-After" in refused.headers
        assert "vtfpar_ready 0.0" in httpx.get(f"{running.url}/metrics").text
        gated.warmup_gate.set()
        wait_until(lambda: httpx.get(f"{running.url}/health/ready").status_code == 200)
        assert post(running.url).status_code == 200


def test_a_failed_warm_up_stops_the_server_so_a_supervisor_restarts_it(tiny_checkpoint, runner):
    class BrokenWarmUp(GatedRunner):
        def warm_up(self, sizes):
            raise RuntimeError("CUDA error: out of memory")

    # Started by hand: the server may stop before any probe of it could answer.
    settings = make_settings(tiny_checkpoint)
    running = RunningServer(create_app(settings, runner=BrokenWarmUp(runner)), settings)
    running.thread.start()
    running.thread.join(timeout=30)
    assert not running.thread.is_alive(), "the server kept running with a model it cannot serve"
    assert running.server.failed


def test_a_sticky_cuda_error_takes_the_service_out_of_ready_and_stops_the_server(tiny_checkpoint, runner):
    """After an illegal memory access every later kernel fails: the batch is a 500, and rather than answer 500 for
    ever while /health/ready says 200, the server leaves ready and exits so that its supervisor restarts it."""
    from app.inference import ModelRunner

    def illegal_access(batch):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors ...")

    lost = ModelRunner(runner.model, runner.served, runner.device, "fp32")
    lost.compiled = illegal_access  # the forward pass predict runs
    settings = make_settings(tiny_checkpoint, warmup=False)
    running = RunningServer(create_app(settings, runner=lost), settings).start()
    failed = post(running.url)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error"
    running.thread.join(timeout=30)
    assert not running.thread.is_alive(), "the server kept answering with a device that can serve no batch"
    assert running.server.failed and not running.service.ready
    assert lost.device_lost == "CUDA error: an illegal memory access was encountered"


def test_errors_a_later_batch_may_not_repeat_keep_the_server_serving():
    from app.inference import sticky_device_error

    assert sticky_device_error(torch.AcceleratorError("CUDA error: misaligned address")) is not None
    assert sticky_device_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) is None
    assert sticky_device_error(RuntimeError("an illegal memory access")) is None  # not from the accelerator
    assert sticky_device_error(torch.AcceleratorError("CUDA error: invalid configuration argument")) is None


def test_a_full_queue_gives_429_and_a_stale_clip_503(tiny_checkpoint, runner):
    gated = GatedRunner(runner)
    settings = make_settings(
        tiny_checkpoint, max_batch_clips=1, max_queue=1, queue_timeout_s=1.0, retry_after_s=2, warmup=False
    )
    with serving(settings, runner=gated) as running:
        gated.batch_gate.clear()
        first = in_background(post, running.url)  # runs, held on the model thread
        assert gated.in_batch.wait(10)
        second = in_background(post, running.url)  # waits in the queue
        wait_until(lambda: running.service.backend.batcher.depth == 1)
        full = post(running.url)
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "queue_full" and full.headers["Retry-After"] == "2"
        second["thread"].join(10)
        stale = second["value"]
        assert stale.status_code == 503 and stale.json()["error"]["code"] == "queue_timeout"
        assert "Retry-After" in stale.headers
        gated.batch_gate.set()
        first["thread"].join(10)
        assert first["value"].status_code == 200
        metrics = httpx.get(f"{running.url}/metrics").text
        assert 'vtfpar_rejections_total{reason="queue_full"} 1.0' in metrics
        assert 'vtfpar_rejections_total{reason="queue_timeout"} 1.0' in metrics


def test_too_many_requests_in_flight_gives_429(tiny_checkpoint, runner):
    gated = GatedRunner(runner)
    settings = make_settings(tiny_checkpoint, max_concurrent_requests=1, warmup=False)
    with serving(settings, runner=gated) as running:
        gated.batch_gate.clear()
        first = in_background(post, running.url)
        assert gated.in_batch.wait(10)
        refused = post(running.url)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "overloaded"
        gated.batch_gate.set()
        first["thread"].join(10)
        assert first["value"].status_code == 200


def test_a_client_that_leaves_takes_its_clip_out_of_the_queue(tiny_checkpoint, runner):
    gated = GatedRunner(runner)
    settings = make_settings(tiny_checkpoint, max_batch_clips=1, warmup=False)
    with serving(settings, runner=gated) as running:
        gated.batch_gate.clear()
        first = in_background(post, running.url)
        assert gated.in_batch.wait(10)

        async def leave_while_queued():
            async with httpx.AsyncClient(base_url=running.url) as client:
                task = asyncio.create_task(client.post("/predict", files={"video": ("c.avi", CLIP)}))
                while running.service.backend.batcher.depth == 0:
                    await asyncio.sleep(0.01)
                task.cancel()

        asyncio.run(leave_while_queued())
        wait_until(lambda: running.service.backend.batcher.depth == 0)
        gated.batch_gate.set()
        first["thread"].join(10)
        assert first["value"].status_code == 200
        wait_until(
            lambda: (
                'vtfpar_rejections_total{reason="client_disconnected"} 1.0' in httpx.get(f"{running.url}/metrics").text
            )
        )
        assert "vtfpar_batch_size_clips_count 1.0" in httpx.get(f"{running.url}/metrics").text


def test_sigterm_stops_readiness_at_once_and_finishes_accepted_work(tiny_checkpoint, runner):
    gated = GatedRunner(runner)
    with serving(make_settings(tiny_checkpoint, warmup=False), runner=gated) as running:
        gated.batch_gate.clear()
        accepted = in_background(post, running.url)
        assert gated.in_batch.wait(10)
        running.server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler calls
        assert running.service.ready is False
        assert "vtfpar_ready 0.0" in running.service.metrics.exposition().decode()
        time.sleep(0.2)
        assert running.thread.is_alive(), "the server exited with a request in flight"
        gated.batch_gate.set()
        accepted["thread"].join(10)
        assert accepted["value"].status_code == 200
        running.thread.join(10)
        assert not running.thread.is_alive()


@pytest.mark.slow
@pytest.mark.e2e
def test_python_m_app_serves_from_env_and_exits_cleanly_on_sigterm(tiny_checkpoint, tmp_path):
    settings = {"VTFPAR_CHECKPOINT": str(tiny_checkpoint), "VTFPAR_DEVICE": "cpu", "VTFPAR_MAX_BATCH_CLIPS": "3"}
    with AppProcess(settings, tmp_path / "app.log") as app:
        app.wait_ready(timeout_s=60)
        assert httpx.get(f"{app.url}/info").json()["batching"]["max_batch_clips"] == 3
        app.process.send_signal(signal.SIGTERM)
        app.process.wait(timeout=30)
    output = app.output()
    # uvicorn re-raises the signal once shut down, so the exit status says "terminated by SIGTERM".
    assert app.process.returncode in (0, -signal.SIGTERM), output
    assert '"msg": "draining: not ready' in output  # JSON logs by default
    assert "Application shutdown complete" in output


@pytest.mark.slow
@pytest.mark.e2e
def test_a_missing_checkpoint_stops_startup_with_a_clear_message(tmp_path):
    settings = {
        "VTFPAR_CHECKPOINT": str(tmp_path / "nope.safetensors"),
        "VTFPAR_DEVICE": "cpu",
        "VTFPAR_LOG_JSON": "false",
    }
    with AppProcess(settings, tmp_path / "app.log") as app:
        assert app.process.wait(timeout=60) == 3
    assert f"cannot load the model: VTFPAR_CHECKPOINT={tmp_path / 'nope.safetensors'} does not exist" in app.output()
    assert "Traceback" not in app.output()


@pytest.mark.slow
@pytest.mark.e2e
def test_a_broken_streams_file_stops_startup_with_one_clean_line(tiny_checkpoint, tmp_path):
    streams = tmp_path / "streams.json"
    streams.write_text('[{"name": "gate-3",')
    settings = {
        "VTFPAR_CHECKPOINT": str(tiny_checkpoint),
        "VTFPAR_STREAMS_FILE": str(streams),
        "VTFPAR_WARMUP": "false",
        "VTFPAR_LOG_JSON": "false",
    }
    with AppProcess(settings, tmp_path / "app.log") as app:
        assert app.process.wait(timeout=60) == 3
    errors = [line for line in app.output().splitlines() if " ERROR " in line]
    assert len(errors) == 2 and f"cannot start: VTFPAR_STREAMS_FILE={streams} cannot be read" in errors[0], errors
    assert errors[1].endswith("Application startup failed. Exiting.")  # uvicorn's, with no traceback before it
    assert "Traceback" not in app.output()


def test_without_a_checkpoint_the_demo_model_is_served_or_its_absence_explained(tmp_path, monkeypatch):
    from app.inference import ModelRunner, StartupError
    from app.settings import DEMO_CHECKPOINT, Settings

    settings = Settings(device="cpu")
    assert settings.checkpoint is None and settings.checkpoint_path == DEMO_CHECKPOINT
    if not DEMO_CHECKPOINT.is_file():
        with pytest.raises(StartupError, match="demo checkpoint .* is not installed; set VTFPAR_CHECKPOINT"):
            ModelRunner.load(settings)
    else:
        assert ModelRunner.load(settings).served.demo is True
