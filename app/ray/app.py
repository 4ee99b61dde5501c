"""The Ray Serve application: Ingress -> Model, plus the Coordinator and the StreamRegistry (whose camera actors
send their clips to the Model too), sized by :class:`AppOptions`.

``build_app`` is the application builder that ``deploy/ray/serve.yaml`` names (``import_path:
app.ray.app:build_app``); its ``args`` are :class:`AppOptions`, the same options ``python -m app.ray`` takes as
flags. The service's own settings are the ``VTFPAR_*`` variables of the process that builds the application
(in a config file: ``runtime_env.env_vars``), read once there, given the GPU-sized defaults
(``Settings.for_device``) when the model replicas reserve GPUs, and handed to every replica, so that ingress and
model replicas, and the Ray limits below, cannot disagree.

Ray's limits are derived from those settings so that the service's own limits are the ones that answer:

- Model: ``max_ongoing_requests`` is twice ``VTFPAR_MAX_QUEUE + VTFPAR_MAX_BATCH_CLIPS``, above what the Batcher
  holds, so an overflowing clip reaches a replica and its Batcher answers 429 ``queue_full`` at once.
  ``max_queued_requests`` stays unbounded: Ray counts there the requests not yet assigned to a replica, so a
  burst would trip it with free slots left (and its answer is Ray's 503 text, not the service's error JSON). What
  waits there is bounded anyway, by each ingress replica's ``VTFPAR_MAX_CONCURRENT_REQUESTS``.
- Ingress: ``max_ongoing_requests`` covers ``VTFPAR_MAX_CONCURRENT_UPLOADS + VTFPAR_MAX_CONCURRENT_REQUESTS`` (a
  request holds one or the other) plus probes, so the service's admission answers 429 ``overloaded``.
- Autoscaling (``MIN:MAX`` replicas) targets ongoing requests per replica, which for the Model deployment is its
  queue depth plus the running batch: ``2 x VTFPAR_MAX_BATCH_CLIPS`` (a batch running, a full one waiting). For
  the Ingress deployment, ``4 x VTFPAR_DECODE_WORKERS`` requests in flight (uploading, decoding or waiting for the
  model). Anything else in ``autoscaling_config`` is Ray's default; a config file's ``deployments:`` section
  overrides any of it.
- Both: ``graceful_shutdown_timeout_s`` is ``VTFPAR_DRAIN_TIMEOUT_S``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator
from ray.serve import Application

from ..settings import Settings
from ..tracks import Detector
from .camera import CameraResources
from .coordinator import Coordinator
from .ingress import Ingress
from .model import Model
from .registry import StreamRegistry

_REPLICAS = re.compile(r"(\d+)(?::(\d+))?")
# Health probes and /metrics scrapes on top of the admission limits.
PROBE_HEADROOM = 16
# The service logs its own access lines; Ray's would add one per clip and one per report to the coordinator.
QUIET = {"enable_access_log": False}


class AppOptions(BaseModel):
    """Replica counts and resources: ``python -m app.ray`` flags, or ``args`` in a Serve config file."""

    model_config = {"extra": "forbid"}

    ingress_replicas: str = Field("1", description="N, or MIN:MAX to autoscale on requests in flight.")
    model_replicas: str = Field("1", description="N, or MIN:MAX to autoscale on queue depth.")
    ingress_cpus: float = Field(1.0, ge=0, description="CPUs each ingress replica reserves (decoding).")
    model_cpus: float = Field(1.0, ge=0, description="CPUs each model replica reserves.")
    model_gpus: float = Field(0.0, ge=0, description="GPUs each model replica reserves; fractions share one.")
    camera_cpus: float = Field(
        1.0, ge=0, description="CPUs each camera actor reserves (decoding, detection, tracking: ~1 for 768x576)."
    )
    node_detector_frames: int = Field(
        0, ge=0, description="0: a detector per camera; N: the cameras of a node share one, N frames a batch."
    )
    node_detector_gpus: float = Field(0.0, ge=0, description="GPUs a node's shared detector reserves.")

    @field_validator("ingress_replicas", "model_replicas", mode="before")
    @classmethod
    def _replicas(cls, value: object) -> str:
        text = str(value).strip()
        match = _REPLICAS.fullmatch(text)
        if match is None or (match[2] is not None and int(match[2]) < max(int(match[1]), 1)) or text == "0":
            raise ValueError(f"expected N (at least 1) or MIN:MAX (MAX >= MIN, MAX >= 1), got {value!r}")
        return text


def replica_counts(spec: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1:4"`` -> (1, 4)."""
    low, _, high = spec.partition(":")
    return int(low), int(high or low)


def scaling(spec: str, target_ongoing_requests: int) -> dict:
    """A fixed ``num_replicas``, or an ``autoscaling_config`` between MIN and MAX."""
    low, high = replica_counts(spec)
    if ":" not in spec:
        return {"num_replicas": low}
    return {
        "autoscaling_config": {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": target_ongoing_requests,
        }
    }


def build_app(args: dict) -> Application:
    """The builder a Serve config file names; ``args`` are :class:`AppOptions`."""
    return application(AppOptions.model_validate(args), Settings())


def model_device_type(options: AppOptions, settings: Settings) -> str:
    """Where the model replicas run: CUDA only where they reserve GPUs (Ray hides the GPUs from a replica that
    reserves none)."""
    return "cuda" if options.model_gpus > 0 and settings.device != "cpu" else "cpu"


def application(options: AppOptions, settings: Settings, detector: Detector | None = None) -> Application:
    """The application; ``detector`` replaces the configured person detector in the camera actors (tests)."""
    # The device's defaults, once, before anything is sized from the settings: the replicas' own for_device then
    # finds nothing left to change.
    settings = settings.for_device(model_device_type(options, settings))
    # @serve.deployment makes each class a Deployment, but mypy keeps a decorated class's own type.
    coordinator = Coordinator.options(logging_config=QUIET).bind()  # type: ignore[attr-defined]
    model = Model.options(  # type: ignore[attr-defined]
        **scaling(options.model_replicas, 2 * settings.max_batch_clips),
        max_ongoing_requests=2 * (settings.max_queue + settings.max_batch_clips),
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        ray_actor_options={"num_cpus": options.model_cpus, "num_gpus": options.model_gpus},
        logging_config=QUIET,
    ).bind(settings, coordinator, options.model_gpus)
    registry = StreamRegistry.options(logging_config=QUIET).bind(  # type: ignore[attr-defined]
        settings, model, coordinator, CameraResources.of(options), detector
    )
    return Ingress.options(  # type: ignore[attr-defined]
        **scaling(options.ingress_replicas, 4 * settings.decode_workers),
        max_ongoing_requests=settings.max_concurrent_uploads + settings.max_concurrent_requests + PROBE_HEADROOM,
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        ray_actor_options={"num_cpus": options.ingress_cpus},
        logging_config=QUIET,
    ).bind(settings, model, coordinator, registry)
