"""The service as ``python -m app`` runs it, configured by the same ``VTFPAR_*`` variables, except that the model's
forward pass returns zeros: what the server's CPU time then measures is everything outside the model (upload,
multipart, sniffing, demuxing, decoding, sampling, preprocessing, queueing and batching, the response and its
JSON, logs and metrics).

    VTFPAR_CHECKPOINT=model.safetensors python -m benchmarks.free_model_server
"""

from __future__ import annotations

import sys

import torch

from app.inference import ModelRunner
from app.main import build_server, create_app
from app.settings import Settings


def free_forward(frames: torch.Tensor, attributes: int) -> torch.Tensor:
    return torch.zeros(frames.shape[0], attributes, device=frames.device)


def main() -> None:
    settings = Settings()
    runner = ModelRunner.load(settings)
    attributes = len(runner.schema)
    runner.model.forward = lambda frames: free_forward(frames, attributes)  # type: ignore[method-assign]
    server = build_server(create_app(settings, runner=runner), settings)
    server.run()
    if not server.started:
        sys.exit(3)


if __name__ == "__main__":
    main()
