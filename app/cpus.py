"""How many CPUs this process may use: its affinity mask, capped by the cgroup's CPU quota (a container's --cpus, a
Kubernetes CPU limit). ``os.cpu_count()`` counts the host's cores, often 100-200 on GPU servers, whatever the
container is allowed; sizing thread pools by it oversubscribes a quota many times over."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")  # a container sees its own cgroup here


def usable_cpus(cgroup: Path = CGROUP) -> int:
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup)
    return max(1, min(allowed, math.ceil(quota))) if quota is not None else allowed


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs' worth of time per period the cgroup may use (cgroup v2's cpu.max, or v1's CFS quota); None: no quota."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "150000 100000"
    except (OSError, ValueError):
        try:  # v1
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()  # -1: none
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return int(quota) / int(period)
