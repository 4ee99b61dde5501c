"""The CPUs the service sizes its pools by: the process's affinity capped by a container's CPU quota, not the host's
core count; and torch kept to one thread on CUDA, where its CPU work runs on the decode threads."""

import os

import pytest
import torch

from app.cpus import cpu_quota, usable_cpus
from app.inference import torch_threads
from app.settings import Settings


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2, docker run --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_or_v1(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota


def test_usable_cpus_are_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)))
    assert usable_cpus(tmp_path) == 128
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert usable_cpus(tmp_path) == 3  # a part-used CPU still runs a thread
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert usable_cpus(tmp_path) == 2


def test_torch_runs_one_thread_on_cuda_unless_told():
    assert torch_threads(Settings(), torch.device("cuda")) == 1
    assert torch_threads(Settings(), torch.device("cpu")) is None
    assert torch_threads(Settings(torch_threads=4), torch.device("cuda")) == 4
