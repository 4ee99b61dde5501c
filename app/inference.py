"""The model behind the batcher: loading the checkpoint, device and dtype, the forward pass, warm-up."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model import VTFPAR, load_checkpoint
from model.decisions import probabilities

from .settings import DEMO_CHECKPOINT, Settings

log = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class StartupError(RuntimeError):
    """The service cannot start with these settings; the message says what to change."""


@dataclass(frozen=True)
class ModelIdentity:
    name: str  # the config (preset) name
    digest: str  # sha256 of the checkpoint file
    schema: str  # attribute schema name
    demo: bool  # the built-in demo checkpoint is being served
    checkpoint: str
    model_card: str | None = None  # where the model's card is (URL or path), from the checkpoint's provenance

    @property
    def version(self) -> str:
        return self.digest[:12]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise StartupError("VTFPAR_DEVICE=cuda but CUDA is not available on this host")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_dtype(requested: str, device: torch.device) -> str:
    if device.type != "cuda":
        if requested not in ("auto", "fp32"):
            raise StartupError(f"VTFPAR_DTYPE={requested} needs CUDA; on CPU the model runs in fp32")
        return "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def warmup_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two up to the largest batch, and the largest batch itself."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch]


class ModelRunner:
    def __init__(self, model: VTFPAR, identity: ModelIdentity, device: torch.device, dtype: str) -> None:
        self.model = model.eval().to(device)
        self.identity = identity
        self.device = device
        self.dtype = dtype

    @classmethod
    def load(cls, settings: Settings) -> ModelRunner:
        path = settings.checkpoint_path
        if settings.uses_demo_checkpoint:
            if not DEMO_CHECKPOINT.is_file():
                raise StartupError(
                    f"VTFPAR_CHECKPOINT is not set and the built-in demo checkpoint {DEMO_CHECKPOINT} "
                    "is not installed; set VTFPAR_CHECKPOINT to a .safetensors checkpoint"
                )
            log.warning("serving the built-in demo model %s: set VTFPAR_CHECKPOINT to serve your own", path)
        elif not Path(path).is_file():
            raise StartupError(f"VTFPAR_CHECKPOINT={path} does not exist")
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        loaded = load_checkpoint(path, device=device, backbone_weights=settings.backbone_weights)
        model = loaded.model
        identity = ModelIdentity(
            name=model.config.name,
            digest=loaded.digest,
            schema=model.schema.name,
            demo=settings.uses_demo_checkpoint,
            checkpoint=str(path),
            model_card=(loaded.metadata.get("provenance") or {}).get("model_card"),
        )
        log.info(
            "loaded %s (version %s, schema %s) on %s/%s",
            identity.name,
            identity.version,
            identity.schema,
            device,
            dtype,
        )
        return cls(model, identity, device, dtype)

    @property
    def frames_per_clip(self) -> int:
        return self.model.config.frames

    @property
    def preprocess(self):
        return self.model.preprocess

    @property
    def schema(self):
        return self.model.schema

    @property
    def thresholds(self) -> list[float]:
        return list(self.model.thresholds)

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype in _AUTOCAST_DTYPES:
            return torch.autocast("cuda", dtype=_AUTOCAST_DTYPES[self.dtype])
        return contextlib.nullcontext()

    def predict(self, clips: torch.Tensor) -> np.ndarray:
        """Probabilities [B, A] for clips [B, T, 3, S, S]."""
        with torch.inference_mode(), self._autocast():
            logits = self.model(clips.to(self.device, non_blocking=True))
        return probabilities(logits, self.model.temperatures).cpu().numpy()

    def warm_up(self, batch_sizes: list[int]) -> None:
        size = self.model.config.image_size
        for batch in batch_sizes:
            self.predict(torch.zeros(batch, self.frames_per_clip, 3, size, size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
