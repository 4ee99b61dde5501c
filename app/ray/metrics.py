"""``/metrics`` for a whole Ray application: every replica's own series, each labelled with its ``deployment``
(``Ingress`` or ``Model``) and ``replica`` (Serve's replica tag, as in Ray's own metrics), and every camera actor's
``vtfpar_stream_*`` series (``deployment="Camera"``, ``replica``: the actor's name).

The series are those of the single-process service, split where the work is done: ingress replicas count requests,
uploads, decoding and rejections; model replicas report the queue, the batches and GPU memory. Both report
``vtfpar_ready``, ``vtfpar_model_info`` and their ``process_*``/``python_*`` collectors. Sum across replicas in
PromQL (``sum by (le) (rate(vtfpar_batch_size_clips_bucket[5m]))``). Other replicas' series are at most one
report interval (1 s) old; the answering ingress replica's own are current.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..metrics import Metrics
from .coordinator import CAMERA, INGRESS, ReplicaReport

# Families a model replica updates (the batcher's and the GPU's); an ingress replica has them too, always empty.
MODEL_FAMILIES = frozenset(
    {
        "vtfpar_queue_wait_seconds",
        "vtfpar_queue_depth",
        "vtfpar_batch_size_clips",
        "vtfpar_batch_inference_duration_seconds",
        "vtfpar_gpu_memory_allocated_bytes",
        "vtfpar_gpu_memory_reserved_bytes",
    }
)
# Families every replica reports for itself.
EVERY_REPLICA = ("vtfpar_ready", "vtfpar_model_info", "process_", "python_")
# A camera actor's (app.ray.camera): its stream's series and its process.
CAMERA_FAMILIES = ("vtfpar_stream_", "process_", "python_")


def _reported_by(deployment: str, family: str) -> bool:
    if deployment == CAMERA:
        return family.startswith(CAMERA_FAMILIES)
    if family.startswith(EVERY_REPLICA):
        return True
    return (family in MODEL_FAMILIES) != (deployment == INGRESS)


class _Merged:
    """A collector yielding already-built metric families (``generate_latest`` renders collectors)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge(reports: Iterable[ReplicaReport]) -> bytes:
    """One exposition of every report's series, each sample labelled with its replica."""
    families: dict[str, Metric] = {}
    for report in reports:
        for family in text_string_to_metric_families(report.exposition.decode()):
            if not _reported_by(report.deployment, family.name):
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            extra = {"deployment": report.deployment, "replica": report.replica}
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, **extra}, sample.value, sample.timestamp)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families.values()))
    return generate_latest(registry)


class ClusterMetrics(Metrics):
    """An ingress replica's metrics, whose exposition covers every replica of the application."""

    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica
        self.others: tuple[ReplicaReport, ...] = ()  # the latest reports of the other replicas

    def own_exposition(self) -> bytes:
        return super().exposition()

    def report(self, in_flight: int = 0, draining: bool = False) -> ReplicaReport:
        """This replica's report to the Coordinator: its own series, and its requests in flight."""
        return ReplicaReport(self.replica, INGRESS, self.own_exposition(), in_flight, draining)

    def exposition(self) -> bytes:
        return merge([self.report(), *self.others])
