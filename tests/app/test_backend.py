"""The seam between routes and the model: a backend of its own (as a Ray ingress replica has) serves the same API,
and the replicas it reports name themselves in X-Replica without any route knowing."""

from __future__ import annotations

import httpx
import numpy as np

from app.backend import LocalBackend, record_replica
from app.batching import Lane
from app.main import create_app
from app.metrics import Metrics
from benchmarks.media import encode, frames

from .harness import RunningServer, make_settings


class ElsewhereBackend:
    """The model "in another process": the local one, answering as replica ``model-7``."""

    def __init__(self, local: LocalBackend) -> None:
        self.local = local
        self.description = local.description
        self.prepare = local.description.prepare_on_host  # what crosses the wire: host tensors only
        self.submitted = 0

    async def start(self) -> None:
        await self.local.start()

    async def submit(self, clip, lane=Lane.PREDICT):
        self.submitted += 1
        result = await self.local.submit(self.local.runner.to_device(clip), lane)
        record_replica("model-7")
        return result

    async def close(self, drain_timeout_s: float) -> None:
        await self.local.close(drain_timeout_s)


def test_a_backend_of_its_own_answers_like_the_local_one_and_names_its_replica(tiny_checkpoint, runner, server):
    settings = make_settings(tiny_checkpoint)
    metrics = Metrics()
    backend = ElsewhereBackend(LocalBackend(settings, runner, metrics))
    elsewhere = RunningServer(create_app(settings, backend=backend, metrics=metrics), settings).start()
    try:
        clip = encode("mp4", frames(9, seed=11))
        answer = httpx.post(f"{elsewhere.url}/predict", files={"video": ("c.mp4", clip)})
        local = httpx.post(f"{server.url}/predict", files={"video": ("c.mp4", clip)})
        assert answer.status_code == 200 and answer.headers["X-Replica"] == "model-7" and backend.submitted == 1
        assert "X-Replica" not in local.headers  # one process: nothing to name
        probabilities = [np.array([a["probability"] for a in r.json()["attributes"]]) for r in (answer, local)]
        np.testing.assert_allclose(*probabilities, atol=1e-5)
        assert "X-Replica" not in httpx.get(f"{elsewhere.url}/health/ready").headers
        assert httpx.get(f"{elsewhere.url}/info").json()["model"] == httpx.get(f"{server.url}/info").json()["model"]
    finally:
        elsewhere.stop()
