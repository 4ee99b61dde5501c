"""An ONNX export (``python -m model.export``) served with ONNX Runtime, behind the interface the service uses for
the model (:class:`~app.runner.Runner`): the same preparation, batching, limits and answers as the torch
checkpoint it was exported from.

Everything the service needs besides the graph (config, schema, thresholds, temperatures, preprocessing) is read
from the file's ``vtfpar`` metadata; nothing is unpickled. Clips wait in the queue as uint8 squares made on the
decode threads and are normalised per batch (as the torch runner does on CPU); the graph maps them to logits;
probabilities come from the same ``model.decisions.probabilities``.

Providers: the CPU one by default; with ``onnxruntime-gpu`` on a GPU host (``VTFPAR_DEVICE`` auto or cuda), CUDA,
with TensorRT ahead of it when ``VTFPAR_ONNX_TENSORRT`` is on and ONNX Runtime can load TensorRT.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from model import Preprocess
from model.checkpoint import CheckpointError, ModelFacts, model_facts
from model.decisions import probabilities
from model.export import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME, ExportError, read_onnx_metadata

from .runner import ModelDescription, ServedModel, StartupError
from .settings import Settings

log = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def providers_for(settings: Settings, available: list[str], shape: str, max_batch: int) -> list:
    """The execution providers to ask ONNX Runtime for, best first, from the ones this onnxruntime build has.

    ``shape`` is the input's shape after the batch (``"Tx3xSxS"``): TensorRT builds one engine for batches 1 to
    ``max_batch`` and caches it, so only the first start on a host pays for the build."""
    if settings.device == "cpu":
        return [CPU]
    if CUDA not in available:
        if settings.device == "cuda":
            raise StartupError(
                "VTFPAR_DEVICE=cuda, but this onnxruntime has no CUDA provider: install onnxruntime-gpu "
                f"(providers here: {available})"
            )
        return [CPU]
    providers: list = [CUDA, CPU]
    if settings.onnx_tensorrt and TENSORRT in available:
        options = {
            "trt_profile_min_shapes": f"{INPUT_NAME}:1x{shape}",
            "trt_profile_opt_shapes": f"{INPUT_NAME}:{max_batch}x{shape}",
            "trt_profile_max_shapes": f"{INPUT_NAME}:{max_batch}x{shape}",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(
                settings.onnx_tensorrt_cache_dir or Path(tempfile.gettempdir()) / "vtfpar-tensorrt"
            ),
        }
        providers.insert(0, (TENSORRT, options))
    return providers


def cpu_fallback(settings: Settings, available: list[str], used: list[str]) -> str | None:
    """What to tell the operator when ``VTFPAR_DEVICE=auto`` serves an ONNX checkpoint on the CPU though a GPU
    could serve it: ONNX Runtime drops a GPU provider that fails to load (CUDA or cuDNN libraries missing) without
    an error, and the CPU-only package shadows onnxruntime-gpu when both are installed."""
    if settings.device != "auto" or CUDA in used or TENSORRT in used:
        return None
    if CUDA in available:
        return (
            f"VTFPAR_DEVICE=auto: ONNX Runtime could not start {CUDA} (its CUDA or cuDNN libraries did not load; "
            "ONNX Runtime's log above says which), so the model runs on the CPU"
        )
    if torch.cuda.is_available():
        return (
            "VTFPAR_DEVICE=auto: a GPU is here, but this onnxruntime has no CUDA provider, so the model runs on the "
            "CPU: install onnxruntime-gpu alone (the CPU-only onnxruntime package shadows it; pip uninstall it)"
        )
    return None


class OnnxRunner:
    """The model as an ONNX Runtime session; see the module's docstring."""

    def __init__(self, session, facts: ModelFacts, served: ServedModel) -> None:
        self.session = session
        self.served = served
        self.temperatures = facts.temperatures
        self.frames_per_clip = facts.config.frames
        # Exports made before the embedding output give logits only (and the service no embedding with them).
        self.outputs = [output.name for output in session.get_outputs()]
        used = session.get_providers()
        self.device = torch.device("cuda" if CUDA in used or TENSORRT in used else "cpu")
        self.device_lost: str | None = None  # ONNX Runtime reports device failures as errors of the batch only
        self.description = ModelDescription(
            served=served,
            schema=facts.schema,
            thresholds=tuple(facts.thresholds),
            temperatures=None if facts.temperatures is None else tuple(facts.temperatures),
            calibration=facts.calibration,
            frames_per_clip=facts.config.frames,
            image_size=facts.config.image_size,
            device="cuda:0" if self.device.type == "cuda" else "cpu",
            precision="fp32",
            torch_threads=torch.get_num_threads(),
            preprocess=Preprocess.from_config(facts.config),
            preprocess_in_batch=False,
            compiled=False,
            runtime=f"onnxruntime {_onnxruntime().__version__} ({used[0]})",
        )

    @classmethod
    def load(cls, settings: Settings) -> OnnxRunner:
        ort = _onnxruntime()
        path = Path(settings.checkpoint_path)
        if not path.is_file():
            raise StartupError(f"VTFPAR_CHECKPOINT={path} does not exist")
        if settings.precision not in ("auto", "fp32"):
            raise StartupError(f"VTFPAR_PRECISION={settings.precision}: an ONNX checkpoint runs in fp32")
        if settings.compile == "on":
            raise StartupError("VTFPAR_COMPILE=on compiles torch checkpoints; an ONNX checkpoint is not compiled")
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)  # the decode threads' preprocessing
        data = path.read_bytes()  # one read: the digest is of the bytes served
        try:
            metadata = read_onnx_metadata(path, data)
            facts = model_facts(path, metadata)
        except (CheckpointError, ExportError) as exc:
            raise StartupError(str(exc)) from None
        config = facts.config
        shape = f"{config.frames}x3x{config.image_size}x{config.image_size}"
        providers = providers_for(
            settings, ort.get_available_providers(), shape, settings.for_device("cuda").max_batch_clips
        )
        options = ort.SessionOptions()
        if settings.torch_threads:
            options.intra_op_num_threads = settings.torch_threads
        try:
            session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime's errors (Fail, InvalidGraph, ...) derive from Exception only
            raise StartupError(f"{path} is not a loadable ONNX model: {exc}") from None
        _check_signature(path, session, facts)
        served = ServedModel(
            name=config.name,
            digest=hashlib.sha256(data).hexdigest(),
            schema=facts.schema.name,
            demo=False,
            checkpoint=str(path),
            model_card=(metadata.get("provenance") or {}).get("model_card"),
        )
        runner = cls(session, facts, served)
        if settings.device == "cuda" and runner.device.type != "cuda":  # ONNX Runtime fell back to its CPU provider
            raise StartupError(f"VTFPAR_DEVICE=cuda, but ONNX Runtime could not start {providers[0]} on this host")
        fallback = cpu_fallback(settings, ort.get_available_providers(), session.get_providers())
        if fallback:
            log.warning(fallback)
        log.info(
            "loaded %s (version %s, schema %s) with %s",
            served.name,
            served.version,
            served.schema,
            runner.description.runtime,
        )
        return runner

    def prepare(self, frames: list[np.ndarray]) -> torch.Tensor:
        """One clip's RGB uint8 frames -> its ``[T, 3, S, S]`` uint8 squares (runs on a decode thread)."""
        return self.description.prepare_on_host(frames)

    def to_device(self, prepared_on_host):
        """Unchanged: ONNX Runtime copies each batch to its device itself."""
        return prepared_on_host

    def predict(self, clips: list) -> np.ndarray:
        """Probabilities ``[B, A]`` for a batch of prepared clips (runs on the model thread)."""
        return self._run(clips, [OUTPUT_NAME])[0]

    def predict_embedded(self, clips: list) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict``'s probabilities and the export's appearance embeddings (None from an export without them)."""
        if EMBEDDING_NAME not in self.outputs:
            return self.predict(clips), None
        probs, embeddings = self._run(clips, [OUTPUT_NAME, EMBEDDING_NAME])
        return probs, embeddings

    def _run(self, clips: list, outputs: list[str]) -> list[np.ndarray]:
        """The session's ``outputs`` for a batch of prepared clips, the logits turned into probabilities."""
        preprocess = self.description.preprocess
        batch = preprocess.normalize(preprocess.from_uint8(torch.stack(clips))).numpy()
        logits, *others = self.session.run(outputs, {INPUT_NAME: batch})
        return [probabilities(torch.from_numpy(logits), self.temperatures).numpy(), *others]

    def warm_up(self, batch_sizes: list[int]) -> None:
        """Run every batch size once (CUDA and TensorRT set up their kernels per shape)."""
        size = self.description.image_size
        blank = [np.zeros((size, size, 3), dtype=np.uint8)] * self.frames_per_clip
        for batch_size in batch_sizes:
            self.predict([self.prepare(blank) for _ in range(batch_size)])


def _check_signature(path: Path, session, facts: ModelFacts) -> None:
    """The graph takes ``frames [batch, T, 3, S, S]`` and gives ``logits [batch, A]`` for this metadata (and, from
    exports that have it, ``embedding [batch, E]``)."""
    config = facts.config
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected_in = [config.frames, 3, config.image_size, config.image_size]
    if (
        [i.name for i in inputs] != [INPUT_NAME]
        or list(inputs[0].shape[1:]) != expected_in
        or [o.name for o in outputs] not in ([OUTPUT_NAME], [OUTPUT_NAME, EMBEDDING_NAME])
        or list(outputs[0].shape[1:]) != [len(facts.schema)]
    ):
        found = [(i.name, i.shape) for i in inputs], [(o.name, o.shape) for o in outputs]
        raise StartupError(
            f"{path}: its graph does not match its metadata: expected {INPUT_NAME} [batch, {expected_in}] -> "
            f"{OUTPUT_NAME} [batch, {len(facts.schema)}], found inputs and outputs {found}"
        )


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise StartupError(
            "VTFPAR_CHECKPOINT names an ONNX file, which needs ONNX Runtime: pip install 'vtfpar-serve[onnx]'"
        ) from None
    return onnxruntime
