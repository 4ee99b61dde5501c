"""Every knob of the service, read once from the environment (prefix ``VTFPAR_``).

``VTFPAR_MAX_BATCH_CLIPS=16`` sets ``max_batch_clips``; field names map to variables by upper-casing them.
``/info`` echoes the effective values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_CHECKPOINT = Path(__file__).parent / "assets" / "demo.safetensors"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTFPAR_", env_ignore_empty=True, extra="ignore", frozen=True)

    # Model
    checkpoint: Path | None = Field(
        None, description="Checkpoint (.safetensors) to serve; unset = the built-in demo model."
    )
    backbone_weights: str | None = Field(
        None, description="CLIP weights for checkpoints saved without their backbone (a local file or folder)."
    )
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto = cuda when available, else cpu.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Autocast dtype on CUDA (auto = bf16 where supported, else fp16); CPU runs fp32."
    )
    warmup: bool = Field(True, description="Run the batch sizes once before reporting ready.")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (torch.set_num_threads); unset = torch's default (all cores)."
    )

    # Dynamic batching and backpressure
    max_batch_clips: int = Field(8, ge=1, description="Most clips one forward pass takes.")
    max_batch_wait_ms: float = Field(
        5.0, ge=0, description="How long the worker waits to fill a batch after its first clip."
    )
    max_queue: int = Field(64, ge=1, description="Clips waiting for the model; beyond it requests get 429 queue_full.")
    queue_timeout_s: float = Field(
        10.0, gt=0, description="A clip queued longer than this is dropped with 503 queue_timeout."
    )
    max_concurrent_requests: int = Field(
        128,
        ge=1,
        description="/predict requests whose body has arrived, handled at once (decode, queue, forward pass); "
        "beyond it 429 overloaded.",
    )
    max_concurrent_uploads: int = Field(
        256, ge=1, description="/predict bodies being received at once; beyond it 429 overloaded before reading."
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 429 and 503.")

    # Upload and media limits (all checked before any frame is decoded)
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Request body bytes, counted while streaming.")
    upload_timeout_s: float = Field(
        30.0, gt=0, description="A /predict body not complete this long after its headers gets 408 upload_timeout."
    )
    max_upload_frames: int = Field(1000, ge=1, description="Image files in one frames upload.")
    max_pixels: int = Field(3840 * 2160, ge=1, description="Width x height of a video or image.")
    max_duration_s: float = Field(60.0, gt=0, description="Video duration.")
    max_frames_decoded: int = Field(2000, ge=1, description="Frames one request may decode (seeking keeps it low).")
    min_frames: int = Field(1, ge=1, description="Fewest frames a clip or frames upload must have.")
    decode_timeout_s: float = Field(10.0, gt=0, description="Wall-clock deadline for demuxing and decoding one upload.")

    # Decoding resources
    decode_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        ge=1,
        description="Uploads decoded at once (a bounded thread pool).",
    )
    decode_threads: int = Field(2, ge=1, description="FFmpeg threads per decode.")

    # Process
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    drain_timeout_s: float = Field(25.0, ge=0, description="On SIGTERM, how long accepted work may take to finish.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(True, description="One JSON object per log line (false = plain text).")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_frames > self.max_frames_decoded:
            raise ValueError("min_frames cannot exceed max_frames_decoded")
        return self

    @property
    def uses_demo_checkpoint(self) -> bool:
        return self.checkpoint is None

    @property
    def checkpoint_path(self) -> Path:
        return DEMO_CHECKPOINT if self.checkpoint is None else self.checkpoint
