"""Prometheus metrics (``vtfpar_`` prefix, base units, histograms), one registry per app instance.

Labels are closed sets (endpoint templates, status codes, error codes, allow-listed codecs) so the number of
series stays bounded whatever clients send. Average batch size is ``vtfpar_batch_size_clips_sum /
vtfpar_batch_size_clips_count``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .batching import BatchObserver
from .decoding import DecodeObserver

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The *_created series (one per counter/histogram child) double the exposition and no dashboard reads them.
disable_created_metrics()
# A video request (upload, decode, queue, forward) spans 10 ms to tens of seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
# One forward pass or one queue wait: milliseconds to a few seconds.
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)
POWERS_OF_TWO = tuple(float(2**i) for i in range(11))  # 1 .. 1024
UPLOAD_BUCKETS = tuple(float(4**i * 1024) for i in range(1, 11))  # 4 KiB .. 1 GiB


class Metrics(BatchObserver, DecodeObserver):
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.requests = Counter(
            "vtfpar_requests",
            "HTTP requests answered, by endpoint and status code",
            ["endpoint", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "vtfpar_request_duration_seconds",
            "Time to answer a request",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.uploads_in_flight = Gauge(
            "vtfpar_uploads_in_flight", "/predict request bodies being received", registry=registry
        )
        self.in_flight = Gauge(
            "vtfpar_requests_in_flight",
            "/predict requests whose body has arrived, being decoded, queued or run",
            registry=registry,
        )
        self.rejections = Counter("vtfpar_rejections", "Requests refused, by error code", ["reason"], registry=registry)
        self.wrong_tokens = Counter(
            "vtfpar_wrong_tokens", "Requests that sent a wrong API token (missing ones not counted)", registry=registry
        )
        self.upload_bytes = Histogram(
            "vtfpar_upload_bytes", "Request body size of /predict uploads", buckets=UPLOAD_BUCKETS, registry=registry
        )
        self.decode_duration = Histogram(
            "vtfpar_decode_duration_seconds",
            "Demux, decode, sampling and preparation of one upload, by codec (unknown when it failed) and outcome "
            "(ok, error, timeout)",
            ["codec", "outcome"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.frames_decoded = Histogram(
            "vtfpar_frames_decoded", "Frames decoded for one upload", buckets=POWERS_OF_TWO, registry=registry
        )
        self.queue_wait = Histogram(
            "vtfpar_queue_wait_seconds",
            "Time a clip waited in the queue, by outcome: ok (its batch ran), timeout, cancelled (client left)",
            ["outcome"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge("vtfpar_queue_depth", "Clips waiting for the model", registry=registry)
        self.batch_size = Histogram(
            "vtfpar_batch_size_clips", "Clips per forward pass", buckets=POWERS_OF_TWO, registry=registry
        )
        self.batch_duration = Histogram(
            "vtfpar_batch_inference_duration_seconds",
            "Forward pass time of one batch",
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "vtfpar_ready", "1 when the model is loaded and warmed up and not draining", registry=registry
        )
        self.model_info = Gauge(
            "vtfpar_model_info",
            "The model being served (value is always 1)",
            ["name", "version", "schema", "device", "precision"],
            registry=registry,
        )
        self.streams = StreamMetrics(registry)

    def set_model(self, name: str, version: str, schema: str, device: torch.device, precision: str) -> None:
        labels = dict(name=name, version=version, schema=schema, device=device.type, precision=precision)
        self.model_info.labels(**labels).set(1)

    def track_gpu_memory(self, device: torch.device) -> None:
        """GPU memory gauges, in the process that holds the model on ``device`` (a CUDA device)."""
        allocated = Gauge("vtfpar_gpu_memory_allocated_bytes", "GPU memory held by tensors", registry=self.registry)
        reserved = Gauge(
            "vtfpar_gpu_memory_reserved_bytes", "GPU memory reserved by the caching allocator", registry=self.registry
        )
        allocated.set_function(lambda: torch.cuda.memory_allocated(device))
        reserved.set_function(lambda: torch.cuda.memory_reserved(device))

    # BatchObserver
    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def on_queue_wait(self, seconds: float, outcome: str) -> None:
        self.queue_wait.labels(outcome=outcome).observe(seconds)

    # DecodeObserver
    def on_decode(self, codec: str, outcome: str, seconds: float, frames_decoded: int | None) -> None:
        self.decode_duration.labels(codec=codec, outcome=outcome).observe(seconds)
        if frames_decoded is not None:
            self.frames_decoded.observe(frames_decoded)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_duration.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StreamMetrics:
    """One live stream's series (label ``stream``: its id). Removed with the stream, so that the number of
    series stays bounded by VTFPAR_MAX_STREAMS however many streams come and go."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, text: str) -> Counter:
            return Counter(name, text, ["stream"], registry=registry)

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, ["stream"], registry=registry)

        self.families = {
            "frames_in": counter("vtfpar_stream_frames_in", "Frames decoded from a live stream"),
            "frames_dropped": counter(
                "vtfpar_stream_frames_dropped", "Frames for the detector replaced before processing (it fell behind)"
            ),
            "lag": gauge("vtfpar_stream_lag_seconds", "From a frame's arrival to the end of its processing"),
            "detections": counter("vtfpar_stream_detections", "Person boxes the detector found on a stream"),
            "windows": counter("vtfpar_stream_windows", "Track clips the model answered for a stream"),
            "reconnects": counter("vtfpar_stream_reconnects", "Times a stream's source came back after failing"),
            "active_tracks": gauge("vtfpar_stream_active_tracks", "People followed on a stream now"),
        }

    def labels(self, stream_id: str) -> StreamSeries:
        children = {name: family.labels(stream=stream_id) for name, family in self.families.items()}
        return StreamSeries(**children)  # type: ignore[arg-type]  # labels() is typed as the base class

    def remove(self, stream_id: str) -> None:
        for family in self.families.values():
            try:
                family.remove(stream_id)
            except KeyError:
                pass


@dataclass
class StreamSeries:
    frames_in: Counter
    frames_dropped: Counter
    lag: Gauge
    detections: Counter
    windows: Counter
    reconnects: Counter
    active_tracks: Gauge
