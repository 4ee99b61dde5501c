"""The model as a Ray Serve deployment, for whatever runs clips through it: an ingress replica's requests, a
camera actor's track clips (``Lane.STREAM``)."""

from __future__ import annotations

import asyncio

from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from ..backend import record_replica
from ..batching import BatchResult, Lane
from ..errors import ErrorCode, ServiceError
from ..inference import ModelDescription


class RayBackend:
    """The model as a Ray Serve deployment: each clip goes to one model replica, picked by Serve's router."""

    def __init__(self, model, description: ModelDescription) -> None:
        self.model = model  # a DeploymentHandle to the Model deployment
        self.description = description
        self.prepare = description.prepare_on_host

    async def start(self) -> None:
        """Nothing to wait for: a model replica answered ``describe``, and replicas take requests once warm."""

    async def submit(self, clip: object, lane: Lane = Lane.PREDICT) -> BatchResult:
        # The model replica's Batcher takes the lanes in order: a camera's clips (Lane.STREAM) run behind requests.
        response = self.model.infer.remote(clip, lane)
        try:
            answer = await response
        except asyncio.CancelledError:  # the client left: the model replica takes the clip out of its queue
            response.cancel()
            raise
        except BackPressureError:  # only when an operator sets max_queued_requests on the Model deployment
            raise ServiceError(ErrorCode.QUEUE_FULL, "every model replica's queue is full") from None
        except DeploymentUnavailableError:
            raise ServiceError(ErrorCode.NOT_READY, "no model replica is available") from None
        record_replica(answer.replica)
        if answer.error_code is not None:
            raise ServiceError(answer.error_code, answer.error_message)
        return answer.result

    async def close(self, drain_timeout_s: float) -> None:
        """Nothing to close here: model replicas drain their own queues when Serve stops them."""
