"""The provisioned Grafana dashboard: it covers what an operator watches, with queries that Prometheus parses
and that name only metrics the service exports."""

import json
import re
import subprocess
from pathlib import Path

import torch
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/dashboards/vtfpar.json"
# What the issue asks the dashboard to show, and the metric that shows it.
TOPICS = {
    "request rate": "vtfpar_requests_total",
    "latency percentiles": "vtfpar_request_duration_seconds_bucket",
    "queue depth": "vtfpar_queue_depth",
    "batch size": "vtfpar_batch_size_clips",
    "decode time": "vtfpar_decode_duration_seconds_bucket",
    "inference time": "vtfpar_batch_inference_duration_seconds_bucket",
    "rejections": "vtfpar_rejections_total",
    "GPU memory": "vtfpar_gpu_memory_allocated_bytes",
    "live streams' frames": "vtfpar_stream_frames_in_total",
    "live streams' dropped frames": "vtfpar_stream_frames_dropped_total",
    "live streams' lag": "vtfpar_stream_lag_seconds",
    "live streams' windows": "vtfpar_stream_windows_total",
    "live streams' reconnects": "vtfpar_stream_reconnects_total",
}
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def series_names(exposition: str) -> set[str]:
    """Every series name a scrape can return, including those of labelled metrics that have no child yet."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SERIES_SUFFIXES.get(family.type, ("",))
    }


def gpu_service_exposition(monkeypatch) -> str:
    """The metrics a service on a GPU exports: the GPU gauges are registered only for a CUDA model; their
    readings are stubbed, since no GPU is needed to know their names."""
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    metrics = Metrics()
    metrics.set_model("demo", "1", "mars", torch.device("cuda"), "bf16")
    metrics.track_gpu_memory(torch.device("cuda"))
    return metrics.exposition().decode()


def test_dashboard_covers_what_an_operator_watches():
    queries = " ".join(dashboard_queries())
    missing = [topic for topic, metric in TOPICS.items() if metric not in queries]
    assert not missing, f"no panel shows {missing}"
    assert "histogram_quantile(0.99" in queries


def test_dashboard_names_only_metrics_the_service_exports(monkeypatch):
    exported = series_names(gpu_service_exposition(monkeypatch))
    used = {name for query in dashboard_queries() for name in re.findall(r"\bvtfpar_\w+", query)}
    assert used <= exported, f"not exported by app.metrics: {sorted(used - exported)}"


def test_dashboard_queries_are_valid_promql(tool, tmp_path):
    # promtool parses PromQL in recording rules; Grafana's $__rate_interval is substituted as Grafana would.
    queries = [query.replace("$__rate_interval", "1m") for query in dashboard_queries()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query{i}", "expr": query} for i, query in enumerate(queries)],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-rules.yml"
    rules_file.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
