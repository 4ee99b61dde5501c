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

import numpy as np
import torch

from model import VTFPAR, load_checkpoint
from model.decisions import probabilities
from model.precision import autocast, resolve_precision

from .compiled import CompiledForward, resolve_compile
from .runner import DeviceLost, ModelDescription, Runner, ServedModel, StartupError
from .settings import DEMO_CHECKPOINT, Settings

log = logging.getLogger(__name__)

# CUDA errors that poison the context: every later kernel launch fails the same way, so the process must restart.
# (Out of memory is not one of them: torch raises OutOfMemoryError for it, and the next batch may fit.)
STICKY_CUDA_ERRORS = (
    "illegal memory access",
    "illegal address",
    "illegal instruction",
    "misaligned address",
    "unspecified launch failure",
    "device-side assert",
    "uncorrectable ecc error",
    "hardware stack error",
    "launch timed out",
)


def sticky_device_error(exc: BaseException) -> str | None:
    """The first line of ``exc`` when it is a CUDA error that leaves the device unusable, else None."""
    if not isinstance(exc, torch.AcceleratorError):
        return None
    first_line = (str(exc).splitlines() or [""])[0]
    return first_line if any(known in first_line.lower() for known in STICKY_CUDA_ERRORS) else None


def load_runner(settings: Settings) -> Runner:
    """The runner for ``VTFPAR_CHECKPOINT``'s kind of file: ONNX Runtime for ``.onnx``, torch otherwise."""
    if settings.checkpoint_path.suffix.lower() == ".onnx":
        from .onnx_runner import OnnxRunner  # onnxruntime is an optional extra

        return OnnxRunner.load(settings)
    return ModelRunner.load(settings)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise StartupError(f"VTFPAR_DEVICE=cuda but CUDA is not available on this host: {why_no_cuda()}")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("VTFPAR_DEVICE=auto: the model runs on the CPU, because %s", why_no_cuda())
        return torch.device("cpu")
    return torch.device(requested)


def why_no_cuda() -> str:
    """Why torch cannot use a GPU here, in words an operator can act on."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    try:
        torch.cuda.init()  # raises with the driver's own reason (no driver, a driver too old, no device)
    except Exception as exc:  # torch raises RuntimeError or AssertionError, depending on the cause
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    else:
        reason = "no CUDA device is visible"
    built = f"torch {torch.__version__} is built for CUDA {torch.version.cuda}"
    driver = MINIMUM_DRIVER.get(torch.version.cuda.split(".")[0])
    return f"{reason} ({built}{f', which needs NVIDIA driver {driver} or later' if driver else ''})"


# The oldest NVIDIA driver each CUDA major release runs on (CUDA's release notes); PyPI's torch 2.14 is CUDA 13.
MINIMUM_DRIVER = {"12": "525", "13": "580"}


def torch_threads(settings: Settings, device: torch.device) -> int | None:
    """``VTFPAR_TORCH_THREADS``, else 1 on CUDA: there torch's CPU work is preprocessing on the decode threads, one
    upload each, and torch's all-core pool per operation would have them fight over the cores decoding needs."""
    return settings.torch_threads or (1 if device.type == "cuda" else None)


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
        self.compiled = CompiledForward(self.model.forward_with_embedding, device) if compile else None
        self.device_lost: str | None = None
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
        threads = torch_threads(settings, device)
        if threads:
            torch.set_num_threads(threads)
        loaded = load_checkpoint(
            path, device=device, backbone_weights=settings.backbone_weights, clip_image_embedding=settings.clip_text
        )
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

    def predict_embedded(self, clips: list) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Probabilities ``[B, A]``, appearance embeddings ``[B, W]`` and (``clip_image_embedding``, eager only) CLIP
        image embeddings ``[B, E]`` from one forward pass. A CUDA error that leaves the device unusable marks it
        lost (the server stops)."""
        try:
            with torch.inference_mode():
                batch = self._batch(clips)
                with autocast(self.device, self.precision):
                    if self.compiled is not None:
                        logits, embedded = self.compiled(batch)
                        image = None
                    else:
                        logits, embedded, image = self.model.forward_with_embeddings(batch)
                embeddings = embedded.float().cpu().numpy()
                images = None if image is None else image.float().cpu().numpy()
            return probabilities(logits, self.model.temperatures).cpu().numpy(), embeddings, images
        except torch.AcceleratorError as exc:
            reason = sticky_device_error(exc)
            if reason is None:
                raise
            if self.device_lost is None:
                log.critical("%s: the device serves no more batches; the server stops so that it is restarted", reason)
                self.device_lost = reason
            raise DeviceLost(reason) from exc

    @property
    def text_logit_scale(self) -> float | None:
        """CLIP's temperature for text-image cosines, where the model keeps its text tower (free-text search)."""
        tower = self.model.text_tower
        return None if tower is None else tower.logit_scale

    def encode_text(self, text: str) -> np.ndarray:
        """Free text -> its unit CLIP text embedding ``[E]`` through the served model's text tower (any thread: the
        tower is used by nothing else)."""
        with torch.inference_mode():
            return self.model.encode_text([text])[0].cpu().numpy()

    def warm_up(self, batch_sizes: list[int]) -> None:
        """Run every batch size, as often as it takes to compile it (and on CUDA to capture its graph: twice, see
        ``app.compiled.CALLS_TO_CAPTURE``); later batches are padded up to these sizes. Compiled, each size is also
        run once padded, with frames of mixed sizes."""
        calls = 1
        if self.compiled is not None:
            self.compiled.sizes = sorted(set(batch_sizes))
            calls = self.compiled.warmup_calls
        size = self.model.config.image_size
        blank = [np.zeros((size, size, 3), dtype=np.uint8)] * self.frames_per_clip
        # Frames of two sizes, as tracker crops come: on CUDA they take preprocessing's other path.
        mixed = [np.zeros((size * (1 + i % 2), size, 3), dtype=np.uint8) for i in range(self.frames_per_clip)]
        for batch_size in batch_sizes:
            for _ in range(calls):
                self.predict([self.prepare(blank) for _ in range(batch_size)])
            if self.compiled is not None and batch_size > 2:
                # Padded up to this size, of mixed frames: serving's other inputs meet the compiled call before any
                # request does, so a guard they fail recompiles here, not on the model thread under load.
                self.predict([self.prepare(mixed) for _ in range(batch_size - 1)])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
