"""A real Prometheus (Debian's binary, on loopback) scrapes a running service, as the compose stack does.

The service is `python -m app` serving a tiny random checkpoint on CPU; Prometheus scrapes it every second.
"""

import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.media import encode
from benchmarks.servers import LOOPBACK, AppProcess, ServerProcess, free_port
from model import create_model, get_config, load_schema, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 180  # a cold torch import on two busy cores is slow
SCRAPED_TIMEOUT_S = 30
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="Debian's prometheus is not installed: bash .ci/install-deploy-tools.sh installs it"
    ),
]


def synthesize_mp4(frames: int = 8, width: int = 64, height: int = 32) -> bytes:
    """A short h264 clip of noise frames: decodable, and all the tiny model needs."""
    rng = np.random.default_rng(0)
    return encode("mp4", [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)], fps=8)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Base URL of `python -m app` serving a tiny checkpoint on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("service")
    checkpoint = folder / "tiny.safetensors"
    save_checkpoint(create_model(get_config("tiny"), load_schema("mars")), checkpoint)
    settings = {"VTFPAR_CHECKPOINT": str(checkpoint), "VTFPAR_DEVICE": "cpu"}
    with AppProcess(settings, folder / "service.log", cwd=REPO) as app:
        app.wait_ready(STARTUP_TIMEOUT_S)
        yield app.url


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory):
    """Base URL of a Prometheus that scrapes the service every second."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    target = service.removeprefix("http://")
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "vtfpar", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    url = f"http://{LOOPBACK}:{free_port()}"
    command = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    with ServerProcess(command, folder / "prometheus.log") as process:
        process.wait_until_ok(f"{url}/-/ready", 60)
        yield url


def predict(service: str, video: bytes) -> httpx.Response:
    return httpx.post(f"{service}/predict", files={"video": ("clip.mp4", video, "video/mp4")}, timeout=60)


def query_until(prometheus: str, promql: str, accept, timeout_s: float = SCRAPED_TIMEOUT_S) -> list:
    """Runs an instant query until `accept(result)` holds; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        if accept(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_scrapes_the_request_counter(service, prometheus):
    clip = synthesize_mp4()
    for _ in range(3):
        response = predict(service, clip)
        assert response.status_code == 200, response.text

    counter = 'vtfpar_requests_total{endpoint="/predict",status="200"}'
    result = query_until(prometheus, counter, lambda result: result and float(result[0]["value"][1]) >= 3)
    assert result, f"Prometheus has no {counter}; targets: {httpx.get(f'{prometheus}/api/v1/targets').text}"
    assert float(result[0]["value"][1]) >= 3
    assert result[0]["metric"]["job"] == "vtfpar"


def test_every_dashboard_panel_has_data_from_a_cpu_service(service, prometheus):
    """After some traffic, each dashboard query returns series; only the GPU panel is empty on CPU, and the live
    streams' panels without a stream."""
    clip = synthesize_mp4()
    assert predict(service, clip).status_code == 200
    assert predict(service, b"this is not a video").status_code in (400, 415, 422)

    panels = json.loads((REPO / "deploy/grafana/dashboards/vtfpar.json").read_text())["panels"]
    queries = [target["expr"] for panel in panels for target in panel["targets"]]
    empty = [
        query
        for query in queries
        if "vtfpar_gpu_memory" not in query
        and "vtfpar_stream_" not in query
        and not query_until(prometheus, query.replace("$__rate_interval", "10s"), bool)
    ]
    assert not empty, f"no data for: {empty}"
