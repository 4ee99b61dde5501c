"""The service on Ray Serve, end to end: ``python -m app.ray`` on a real local Ray instance, talked to over HTTP.

One Ray instance serves every test here (its start-up is most of this module's time): the first command starts it
with the demo model on 2 ingress and 2 model replicas; a second one joins it (``RAY_ADDRESS``) to serve a
"slow" application under ``/slow`` on 1 + 1 replicas whose batches wait 3 s to fill and whose queue holds 4
clips, so that a burst overflows it and a SIGTERM finds requests in flight. The last test stops the first command.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.media import encode, frames
from benchmarks.servers import RayServeProcess, free_port, ray_environment

from ..harness import make_settings, serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.ray]

pytest.importorskip("ray.serve", reason="the [ray] extra is not installed (pip install -e '.[ray]')")

START_TIMEOUT_S = 300  # a cold Ray instance and six replicas importing torch, on two busy cores
CLIPS = [encode("mp4", frames(8, width=64, height=96, seed=seed)) for seed in range(32)]
SETTINGS = {
    "VTFPAR_DEVICE": "cpu",
    "VTFPAR_DECODE_WORKERS": "2",
    "VTFPAR_DECODE_THREADS": "1",
    "VTFPAR_DRAIN_TIMEOUT_S": "15",
    "VTFPAR_LOG_JSON": "false",
}
SLOW = {
    "VTFPAR_MAX_QUEUE": "4",
    "VTFPAR_MAX_BATCH_CLIPS": "8",  # more than the queue holds: every batch waits the full 3 s
    "VTFPAR_MAX_BATCH_WAIT_MS": "3000",
    "VTFPAR_WARMUP": "false",
}
SMALL = ["--ingress-cpus", "0.25", "--model-cpus", "0.25"]  # logical CPUs: all replicas fit on two cores


@dataclass
class Cluster:
    url: str
    main: RayServeProcess
    slow: RayServeProcess
    ray_address: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    ray_tmp = tempfile.mkdtemp(prefix="vtfpar-ray-")
    env = {**ray_environment(ray_tmp), **SETTINGS}
    port = free_port()
    try:
        flags = ["--ingress-replicas", "2", "--model-replicas", "2", *SMALL]
        with RayServeProcess(flags, folder / "main.log", env, port) as main:
            address = main.ray_address(START_TIMEOUT_S)
            flags = ["--name", "slow", "--route-prefix", "/slow", *SMALL]
            with RayServeProcess(flags, folder / "slow.log", {**env, **SLOW, "RAY_ADDRESS": address}, port) as slow:
                main.wait_until_ok(f"{main.url}/health/ready", START_TIMEOUT_S)
                slow.wait_until_ok(f"{main.url}/slow/health/ready", START_TIMEOUT_S)
                yield Cluster(main.url, main, slow, address)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def post_all(url: str, clips: list[bytes]) -> list[httpx.Response]:
    """Every clip posted at once, each on its own connection."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            posts = [client.post(f"{url}/predict", files={"video": ("clip.mp4", clip)}) for clip in clips]
            return await asyncio.gather(*posts)

    return asyncio.run(run())


def samples(url: str, name: str) -> list:
    return [
        sample
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
        if sample.name == name
    ]


def probabilities(body: dict) -> np.ndarray:
    return np.array([attribute["probability"] for attribute in body["attributes"]])


def test_32_concurrent_clips_are_answered_by_both_model_replicas_as_the_single_process_service_answers(cluster):
    answers = post_all(cluster.url, CLIPS)
    assert [a.status_code for a in answers] == [200] * len(CLIPS), [a.text for a in answers if a.status_code != 200]
    replicas = {answer.headers["X-Replica"] for answer in answers}
    assert len(replicas) >= 2, replicas
    assert all(len(answer.headers.get_list("X-Request-Id")) == 1 for answer in answers)
    with serving(make_settings(None, max_batch_clips=8)) as single:  # the demo model, in this process
        expected = [httpx.post(f"{single.url}/predict", files={"video": ("clip.mp4", clip)}) for clip in CLIPS]
        single_info = httpx.get(f"{single.url}/info").json()
    for ray_answer, single_answer in zip(answers, expected, strict=True):
        assert ray_answer.json()["input"] == single_answer.json()["input"]
        np.testing.assert_allclose(probabilities(ray_answer.json()), probabilities(single_answer.json()), atol=1e-4)
    info = httpx.get(f"{cluster.url}/info").json()
    assert info["model"] == single_info["model"] and info["attributes"] == single_info["attributes"]


def test_metrics_show_every_replica_of_both_deployments(cluster):
    def answered_200() -> float:
        answered = samples(cluster.url, "vtfpar_requests_total")
        return sum(s.value for s in answered if s.labels["endpoint"] == "/predict" and s.labels["status"] == "200")

    def clips_batched() -> float:
        return sum(s.value for s in samples(cluster.url, "vtfpar_batch_size_clips_sum"))

    # Counted from what the series hold now, so that clips other tests sent (or did not) do not matter.
    time.sleep(1.5)  # every replica's last report is in
    batched, answered = clips_batched(), answered_200()
    post_all(cluster.url, CLIPS[:4])
    deadline = time.monotonic() + 10  # other replicas' series are up to one report (1 s) old
    while clips_batched() < batched + 4 or answered_200() < answered + 4:
        assert time.monotonic() < deadline, "the replicas' series never added up to the clips sent"
        time.sleep(0.5)
    ready = {(s.labels["deployment"], s.labels["replica"]): s.value for s in samples(cluster.url, "vtfpar_ready")}
    assert sorted(deployment for deployment, _ in ready) == ["Ingress", "Ingress", "Model", "Model"]
    assert set(ready.values()) == {1.0}
    answered = samples(cluster.url, "vtfpar_requests_total")
    assert {s.labels["deployment"] for s in answered} == {"Ingress"}
    assert {s.labels["deployment"] for s in samples(cluster.url, "vtfpar_queue_depth")} == {"Model"}


def test_a_burst_beyond_the_queue_gets_429_with_retry_after(cluster):
    answers = post_all(f"{cluster.url}/slow", CLIPS[:12])
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429} and statuses.count(200) >= 4, statuses
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.json()["error"]["code"] == "queue_full"
        assert refused.headers["Retry-After"] == "1" and refused.headers["X-Replica"]


def test_sigterm_drains_accepted_requests_and_stops_only_what_that_command_started(cluster):
    slow = f"{cluster.url}/slow"

    async def run() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            posts = [
                asyncio.create_task(client.post(f"{slow}/predict", files={"video": ("clip.mp4", clip)}))
                for clip in CLIPS[:3]
            ]
            while sum(s.value for s in samples(slow, "vtfpar_queue_depth")) < 3:  # all three wait for their batch
                await asyncio.sleep(0.1)
            cluster.slow.process.send_signal(signal.SIGTERM)
            while (ready := await client.get(f"{slow}/health/ready")).status_code == 200:
                await asyncio.sleep(0.1)
            refused = await client.post(f"{slow}/predict", files={"video": ("clip.mp4", CLIPS[3])})
            return await asyncio.gather(*posts), ready, refused

    accepted, ready, refused = asyncio.run(run())
    assert [answer.status_code for answer in accepted] == [200, 200, 200]
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
    assert cluster.slow.process.wait(timeout=60) == 0, cluster.slow.output()[-3000:]
    assert httpx.get(f"{slow}/health/live").status_code == 404  # the application is gone
    assert httpx.get(f"{cluster.url}/health/ready").status_code == 200  # the other one serves on


def test_sigterm_stops_the_ray_instance_the_command_started(cluster):
    host, port = cluster.ray_address.rsplit(":", 1)
    cluster.main.process.send_signal(signal.SIGTERM)
    assert cluster.main.process.wait(timeout=120) == 0, cluster.main.output()[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{cluster.url}/health/live")
    with pytest.raises(OSError):  # nothing listens where Ray's control service was
        socket.create_connection((host, int(port)), timeout=2).close()
