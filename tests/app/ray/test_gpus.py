"""Ray's num_gpus is a scheduling count: a model replica reserving a fraction of a GPU is capped to that fraction of
its memory, actors reserving none are shown none, and a replica whose GPU is lost fails Serve's health check (Serve
then replaces it)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from app.ray import gpus
from app.ray.model import Model


def test_a_fraction_of_a_gpu_caps_the_replicas_memory_to_that_fraction(monkeypatch):
    capped: list[float] = []
    monkeypatch.setattr(gpus.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus.torch.cuda, "set_per_process_memory_fraction", capped.append)
    gpus.cap_gpu_memory(0.5)
    gpus.cap_gpu_memory(1)  # a whole GPU: no cap
    gpus.cap_gpu_memory(2)
    assert capped == [0.5]


def test_no_cap_without_a_gpu(monkeypatch):
    monkeypatch.setattr(gpus.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        gpus.torch.cuda, "set_per_process_memory_fraction", lambda _: (_ for _ in ()).throw(AssertionError)
    )
    gpus.cap_gpu_memory(0.25)


def test_an_actor_that_reserves_no_gpu_sees_none(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpus.hide_gpus()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_model_replica_whose_device_is_lost_fails_serves_health_check():
    replica = SimpleNamespace(runner=SimpleNamespace(device_lost=None))
    Model.func_or_class.check_health(replica)  # healthy
    replica.runner.device_lost = "CUDA error: an illegal memory access was encountered"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        Model.func_or_class.check_health(replica)
