"""/metrics: the documented families, base units, bounded labels, and a valid exposition."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.media import encode, frames

EXPECTED = {
    "vtfpar_requests": "counter",
    "vtfpar_request_duration_seconds": "histogram",
    "vtfpar_requests_in_flight": "gauge",
    "vtfpar_uploads_in_flight": "gauge",
    "vtfpar_rejections": "counter",
    "vtfpar_upload_bytes": "histogram",
    "vtfpar_decode_duration_seconds": "histogram",
    "vtfpar_frames_decoded": "histogram",
    "vtfpar_queue_wait_seconds": "histogram",
    "vtfpar_queue_depth": "gauge",
    "vtfpar_batch_size_clips": "histogram",
    "vtfpar_batch_inference_duration_seconds": "histogram",
    "vtfpar_ready": "gauge",
    "vtfpar_model_info": "gauge",
}
# Every label the service uses; request ids, file names and the like must never become labels.
ALLOWED_LABELS = {
    "endpoint",
    "status",
    "reason",
    "codec",
    "le",
    "name",
    "version",
    "schema",
    "device",
    "precision",
    "outcome",
}


@pytest.fixture(scope="module")
def exposition(server) -> str:
    httpx.post(
        f"{server.url}/predict",
        files={"video": ("c.mp4", encode("mp4", frames(6)))},
        headers={"X-Request-Id": "must-not-be-a-label"},
    )
    httpx.post(f"{server.url}/predict", files={"video": ("c.mp4", b"not a video")})
    httpx.get(f"{server.url}/no/such/path/12345")
    return httpx.get(f"{server.url}/metrics").text


def test_the_documented_metrics_are_exposed(server, exposition):
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    for name, kind in EXPECTED.items():
        assert name in families and families[name].type == kind, name
    info = families["vtfpar_model_info"].samples[0]
    served = server.service.backend.description.served
    assert info.value == 1 and info.labels == {
        "name": "tiny",
        "version": served.version,
        "schema": "mars",
        "device": "cpu",
        "precision": "fp32",
    }
    requests = {(s.labels["endpoint"], s.labels["status"]) for s in families["vtfpar_requests"].samples}
    assert ("/predict", "200") in requests and ("/predict", "415") in requests and ("unmatched", "404") in requests
    reasons = {s.labels["reason"] for s in families["vtfpar_rejections"].samples}
    assert reasons >= {"unsupported_media_type", "not_found"}
    decode = {(s.labels["codec"], s.labels["outcome"]) for s in families["vtfpar_decode_duration_seconds"].samples}
    assert ("h264", "ok") in decode and ("unknown", "error") in decode  # failures are timed too
    waits = {s.labels["outcome"] for s in families["vtfpar_queue_wait_seconds"].samples}
    assert "ok" in waits
    assert families["vtfpar_ready"].samples[0].value == 1
    # GPU memory gauges exist only on CUDA.
    assert "vtfpar_gpu_memory_allocated_bytes" not in families


def test_labels_stay_bounded(exposition):
    for family in text_string_to_metric_families(exposition):
        if family.name.startswith("vtfpar_"):
            for sample in family.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)
    assert "must-not-be-a-label" not in exposition and "/no/such/path" not in exposition


def test_promtool_accepts_the_exposition(exposition):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); the parser test above still runs")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
