"""The model behind the batcher: loading the checkpoint, device and precision, preparing clips, the forward
pass, warm-up.

A clip's frames reach the model in two steps. ``prepare`` runs on a decode thread, inside the upload's decode
deadline; ``predict`` runs a batch on the model thread. On CPU, ``prepare`` does all of the resizing (the
decode threads run in parallel; the model thread would serialise it) and keeps the clip in uint8, a quarter of the
memory of floats while it waits in the queue; ``predict`` converts and normalises the batch. On CUDA, ``prepare``
does the cheap uint8 half (``Preprocess.fit``: long side resized, short side padded) and copies the result to the
GPU on that thread's own stream, overlapping the batches running on the model thread; ``predict`` then finishes
the resize and normalises the whole batch on the GPU. Both use the same ``model.Preprocess`` code. With
``VTFPAR_COMPILE`` the forward pass runs compiled (``app.compiled``) for the batch sizes ``warm_up`` ran.

``prepare`` is ``to_device(description.prepare_on_host(frames))``: on Ray, an ingress replica runs the host half
(it needs only the ``ModelDescription``) and a model replica the copy to its device.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from model import VTFPAR, AttributeSchema, Preprocess, load_checkpoint
from model.decisions import probabilities
from model.precision import autocast, resolve_precision

from .compiled import CompiledForward, resolve_compile
from .settings import DEMO_CHECKPOINT, Settings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start with these settings; the message says what to change."""


@dataclass(frozen=True)
class ServedModel:
    """Which checkpoint is served, as answers and metrics name it."""

    name: str  # the config (preset) name
    digest: str  # sha256 of the checkpoint file
    schema: str  # attribute schema name
    demo: bool  # the built-in demo checkpoint is being served
    checkpoint: str
    model_card: str | None = None  # where the model's card is (URL or path), from the checkpoint's provenance
    pretrained_tower: bool | None = None  # the CLIP tower has pretrained weights (the demo's is random); None: unknown

    @property
    def version(self) -> str:
        return self.digest[:12]


@dataclass(frozen=True)
class ModelDescription:
    """What answers, ``/info`` and metrics say about the model being served, and the host's half of preparing its
    input: everything a process needs to serve requests for a model that runs elsewhere (a Ray model replica)."""

    served: ServedModel
    schema: AttributeSchema
    thresholds: tuple[float, ...]
    temperatures: tuple[float, ...] | None  # per attribute, when the checkpoint was calibrated with them
    calibration: dict | None  # what the thresholds (and temperatures) were fit on
    frames_per_clip: int
    image_size: int
    device: str  # where the model runs, e.g. "cuda:0"
    precision: str
    torch_threads: int  # of the process that runs the model
    preprocess: Preprocess
    preprocess_in_batch: bool  # the device finishes preprocessing batch-wise (CUDA); see ModelRunner
    compiled: bool  # the forward pass runs compiled (VTFPAR_COMPILE)
    runtime: str = f"torch {torch.__version__}"  # what runs the forward pass, e.g. "onnxruntime 1.32.0 (CPU...)"

    def prepare_on_host(self, frames: list[np.ndarray]):
        """One clip's RGB uint8 frames -> host tensors, to be moved to the model's device by
        ``ModelRunner.to_device``: the clip's uint8 squares, or (``preprocess_in_batch``) its uint8 fitted frames."""
        if not self.preprocess_in_batch:
            return self.preprocess.squares_uint8(frames)
        return self.preprocess.fit(frames)


class Runner(Protocol):
    """The model in this process, as the service drives it: a torch checkpoint (:class:`ModelRunner`) or an ONNX
    export (:class:`app.onnx_runner.OnnxRunner`)."""

    description: ModelDescription
    served: ServedModel
    device: torch.device

    def prepare(self, frames: list[np.ndarray]) -> object:
        """One clip's RGB uint8 frames -> one item of a ``predict`` batch (runs on a decode thread)."""
        ...

    def to_device(self, prepared_on_host) -> object:
        """``ModelDescription.prepare_on_host``'s result -> one item of a ``predict`` batch."""
        ...

    def predict(self, clips: list) -> np.ndarray:
        """Probabilities ``[B, A]`` for a batch of prepared clips (runs on the model thread)."""
        ...

    def predict_embedded(self, clips: list) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict``'s probabilities and the clips' appearance embeddings ``[B, W]`` (None where the runner has
        none): what the batcher runs."""
        ...

    def warm_up(self, batch_sizes: list[int]) -> None: ...


def load_runner(settings: Settings) -> Runner:
    """The runner for ``VTFPAR_CHECKPOINT``'s kind of file: ONNX Runtime for ``.onnx``, torch otherwise."""
    if settings.checkpoint_path.suffix.lower() == ".onnx":
        from .onnx_runner import OnnxRunner  # onnxruntime is an optional extra

        return OnnxRunner.load(settings)
    return ModelRunner.load(settings)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise StartupError("VTFPAR_DEVICE=cuda but CUDA is not available on this host")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_service_precision(requested: str, device: torch.device) -> str:
    if device.type != "cuda" and requested not in ("auto", "fp32"):
        raise StartupError(f"VTFPAR_PRECISION={requested} needs CUDA; on CPU the model runs in fp32")
    return resolve_precision(requested, device)


def warmup_batch_sizes(max_batch_clips: int) -> list[int]:
    """Powers of two up to the largest batch, and the largest batch itself."""
    sizes, size = [], 1
    while size < max_batch_clips:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_clips]


@dataclass
class FramesOnDevice:
    """One clip's fitted uint8 frames, copied to the GPU on a decode thread's stream; ``ready`` marks the copy."""

    frames: list[torch.Tensor]
    ready: torch.cuda.Event


class _Uploader:
    """Copies frames to the GPU from decode threads, each on its own stream, through pinned memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._local = threading.local()

    def __call__(self, frames: list[torch.Tensor]) -> FramesOnDevice:
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            on_device = [frame.pin_memory().to(self.device, non_blocking=True) for frame in frames]
            ready = torch.cuda.Event()
            ready.record(stream)
        return FramesOnDevice(on_device, ready)


class ModelRunner:
    def __init__(
        self,
        model: VTFPAR,
        served: ServedModel,
        device: torch.device,
        precision: str,
        preprocess_in_batch: bool | None = None,
        compile: bool = False,
    ) -> None:
        self.model = model.eval().to(device)
        self.served = served
        self.device = device
        self.precision = precision
        # Preprocessing in the batch is the GPU path; on CPU it is tested for its logic only (see prepare).
        self.preprocess_in_batch = device.type == "cuda" if preprocess_in_batch is None else preprocess_in_batch
        self._upload = _Uploader(device) if device.type == "cuda" else None
        self.compiled = CompiledForward(self.model, device) if compile else None
        self.description = ModelDescription(
            served=served,
            schema=self.model.schema,
            thresholds=tuple(self.model.thresholds),
            temperatures=None if self.model.temperatures is None else tuple(self.model.temperatures),
            calibration=self.model.calibration,
            frames_per_clip=self.model.config.frames,
            image_size=self.model.config.image_size,
            device=str(device),
            precision=precision,
            torch_threads=torch.get_num_threads(),
            preprocess=self.model.preprocess,
            preprocess_in_batch=self.preprocess_in_batch,
            compiled=self.compiled is not None,
        )

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
        precision = resolve_service_precision(settings.precision, device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        loaded = load_checkpoint(path, device=device, backbone_weights=settings.backbone_weights)
        model = loaded.model
        served = ServedModel(
            name=model.config.name,
            digest=loaded.digest,
            schema=model.schema.name,
            demo=settings.uses_demo_checkpoint,
            checkpoint=str(path),
            model_card=(loaded.metadata.get("provenance") or {}).get("model_card"),
            pretrained_tower=model.config.clip_weights is not None,
        )
        compiled = resolve_compile(settings.compile, device)
        log.info(
            "loaded %s (version %s, schema %s) on %s/%s, %s",
            served.name,
            served.version,
            served.schema,
            device,
            precision,
            "compiled" if compiled else "eager",
        )
        return cls(model, served, device, precision, compile=compiled)

    @property
    def frames_per_clip(self) -> int:
        return self.model.config.frames

    @property
    def schema(self):
        return self.model.schema

    @property
    def thresholds(self) -> list[float]:
        return list(self.model.thresholds)

    def prepare(self, frames: list[np.ndarray]):
        """One clip's RGB uint8 frames -> what ``predict`` takes for it (runs on a decode thread)."""
        return self.to_device(self.description.prepare_on_host(frames))

    def to_device(self, prepared_on_host):
        """``ModelDescription.prepare_on_host``'s result -> what ``predict`` takes (on CUDA: copied to the GPU on
        the calling thread's stream)."""
        return self._upload(prepared_on_host) if self._upload is not None else prepared_on_host

    def _batch(self, clips: list) -> torch.Tensor:
        """Prepared clips -> the normalised batch ``[B, T, 3, S, S]`` on the model's device."""
        preprocess = self.model.preprocess
        if not self.preprocess_in_batch:
            return preprocess.normalize(preprocess.from_uint8(torch.stack(clips).to(self.device, non_blocking=True)))
        frames = []
        for clip in clips:
            if isinstance(clip, FramesOnDevice):
                stream = torch.cuda.current_stream(self.device)
                stream.wait_event(clip.ready)
                for tensor in clip.frames:  # allocated on the upload stream: keep it until this stream is done
                    tensor.record_stream(stream)
                clip = clip.frames
            frames.extend(clip)
        images = preprocess.normalize(preprocess.finish(frames))
        return images.view(len(clips), -1, *images.shape[1:])

    def predict(self, clips: list) -> np.ndarray:
        """Probabilities ``[B, A]`` for a batch of prepared clips (runs on the model thread)."""
        return self.predict_embedded(clips)[0]

    def predict_embedded(self, clips: list) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``[B, A]`` and appearance embeddings ``[B, W]`` from one forward pass; the compiled
        forward pass returns logits only, so its embeddings are None."""
        embeddings = None
        with torch.inference_mode():
            batch = self._batch(clips)
            with autocast(self.device, self.precision):
                if self.compiled is not None:
                    logits = self.compiled(batch)
                else:
                    logits, embedded = self.model.forward_with_embedding(batch)
                    embeddings = embedded.float().cpu().numpy()
        return probabilities(logits, self.model.temperatures).cpu().numpy(), embeddings

    def warm_up(self, batch_sizes: list[int]) -> None:
        """Run every batch size, as often as it takes to compile it (and on CUDA to capture its graph: twice, see
        ``app.compiled.CALLS_TO_CAPTURE``); later batches are padded up to these sizes."""
        calls = 1
        if self.compiled is not None:
            self.compiled.sizes = sorted(set(batch_sizes))
            calls = self.compiled.warmup_calls
        size = self.model.config.image_size
        blank = [np.zeros((size, size, 3), dtype=np.uint8)] * self.frames_per_clip
        for batch_size in batch_sizes:
            for _ in range(calls):
                self.predict([self.prepare(blank) for _ in range(batch_size)])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
