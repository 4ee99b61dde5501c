"""The Ray application's sizing options and its merged /metrics, without a Ray instance."""

from __future__ import annotations

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

pytest.importorskip("ray.serve", reason="the [ray] extra is not installed (pip install -e '.[ray]')")

from app.metrics import Metrics  # noqa: E402
from app.ray.app import AppOptions, application, scaling  # noqa: E402
from app.ray.camera import CameraResources  # noqa: E402
from app.ray.coordinator import ReplicaReport  # noqa: E402
from app.ray.metrics import ClusterMetrics  # noqa: E402
from app.settings import CUDA_MAX_BATCH_CLIPS, Settings, cuda_defaults  # noqa: E402


def test_replicas_are_a_fixed_count_or_an_autoscaling_range():
    assert scaling(AppOptions(model_replicas="2").model_replicas, 16) == {"num_replicas": 2}
    assert scaling(AppOptions(model_replicas="1:4").model_replicas, 16) == {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}
    }
    assert AppOptions(ingress_replicas="0:3").ingress_replicas == "0:3"  # scale to zero when idle
    for bad in ("0", "4:1", "0:0", "two", "1-4", ""):
        with pytest.raises(ValidationError, match="expected N"):
            AppOptions(model_replicas=bad)
    with pytest.raises(ValidationError):
        AppOptions(model_gpus=-1)
    with pytest.raises(ValidationError):
        AppOptions.model_validate({"model_replica": "2"})  # a misspelt option in a config file is refused


@pytest.mark.parametrize(("gpus", "batch"), [(0.0, 8), (0.5, CUDA_MAX_BATCH_CLIPS)])
def test_ray_limits_and_every_replica_use_the_settings_of_the_device_the_model_runs_on(gpus, batch):
    """Model replicas with GPUs batch as a GPU does (VTFPAR_MAX_BATCH_CLIPS 32 by default): Ray's limits are sized
    from the same settings the replicas get, not from the CPU defaults."""
    options = AppOptions(model_gpus=gpus, model_replicas="1:4", ingress_replicas="1:2")
    ingress = application(options, Settings())._bound_deployment
    model = ingress.init_args[1]._bound_deployment
    handed = [ingress.init_args[0], model.init_args[0]]
    assert [settings.max_batch_clips for settings in handed] == [batch, batch]
    assert model.max_ongoing_requests == 2 * (Settings().max_queue + batch)
    assert model._deployment_config.autoscaling_config.target_ongoing_requests == 2 * batch
    workers = handed[0].decode_workers
    assert ingress._deployment_config.autoscaling_config.target_ongoing_requests == 4 * workers
    assert workers == (cuda_defaults()["decode_workers"] if gpus else Settings().decode_workers)


def test_merged_metrics_label_each_replica_and_keep_each_series_where_it_is_updated():
    ingress, model = ClusterMetrics("ingress-a"), Metrics()
    for metrics in (ingress, model):
        metrics.set_model("vtfpar-demo", "4fa3639dad4b", "mars", torch.device("cpu"), "fp32")
    ingress.requests.labels(endpoint="/predict", status="200").inc(3)
    model.on_batch(3, 0.02)
    model.on_queue_depth(2)
    ingress.others = (ReplicaReport("model-a", "Model", model.exposition()),)

    samples = {
        (sample.name, sample.labels["deployment"], sample.labels["replica"]): sample
        for family in text_string_to_metric_families(ingress.exposition().decode())
        for sample in family.samples
    }
    assert samples[("vtfpar_requests_total", "Ingress", "ingress-a")].value == 3
    assert samples[("vtfpar_batch_size_clips_sum", "Model", "model-a")].value == 3
    assert samples[("vtfpar_queue_depth", "Model", "model-a")].value == 2
    assert ("vtfpar_model_info", "Model", "model-a") in samples
    assert ("vtfpar_model_info", "Ingress", "ingress-a") in samples
    assert ("vtfpar_queue_depth", "Ingress", "ingress-a") not in samples  # an ingress replica has no queue
    assert ("vtfpar_requests_in_flight", "Model", "model-a") not in samples  # nor a model replica requests
    assert ("process_cpu_seconds_total", "Model", "model-a") in samples


def test_a_camera_actors_stream_series_are_merged_and_nothing_else_of_it():
    ingress, camera = ClusterMetrics("ingress-a"), Metrics()
    camera.streams.labels("5f0c2a91d3e4").frames_in.inc(7)
    ingress.others = (ReplicaReport("vtfpar-camera-5f0c2a91d3e4", "Camera", camera.exposition()),)

    samples = {
        (sample.name, sample.labels["deployment"], sample.labels.get("stream"))
        for family in text_string_to_metric_families(ingress.exposition().decode())
        for sample in family.samples
        if sample.value
    }
    assert ("vtfpar_stream_frames_in_total", "Camera", "5f0c2a91d3e4") in samples
    assert not any(deployment == "Camera" and name == "vtfpar_ready" for name, deployment, _ in samples)


def test_camera_actors_reserve_the_cpus_asked_and_the_registry_gets_them():
    options = AppOptions(camera_cpus=0.5, node_detector_frames=8, node_detector_gpus=0.25)
    ingress = application(options, Settings())._bound_deployment
    registry = ingress.init_args[3]._bound_deployment
    assert registry.init_args[3] == CameraResources(0.5, 8, 0.25)
    with pytest.raises(ValidationError):
        AppOptions(camera_cpus=-1)
