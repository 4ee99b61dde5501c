"""What the service needs of the model in its process, whichever engine runs it (torch in ``app.inference``, ONNX
Runtime in ``app.onnx_runner``): the :class:`Runner` protocol, the :class:`ModelDescription` answers and metrics
quote, and :class:`StartupError`. Both runners import this module and neither imports the other's, so
``app.inference.load_runner`` can choose between them without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from model import AttributeSchema, Preprocess


class StartupError(RuntimeError):
    """The service cannot start with these settings; the message says what to change."""


class DeviceLost(RuntimeError):
    """The accelerator failed in a way no later batch recovers from (a sticky CUDA error): the process must end."""


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


class TextReader(Protocol):
    """A runner whose model keeps CLIP's text tower (``clip_image_embedding``): free text in a search."""

    @property
    def text_logit_scale(self) -> float | None:
        """CLIP's temperature for text-image cosines; None when the model keeps no text tower."""
        ...

    def encode_text(self, text: str) -> np.ndarray:
        """Free text -> its unit CLIP text embedding ``[E]``."""
        ...


class Runner(Protocol):
    """The model in this process, as the service drives it: a torch checkpoint (:class:`ModelRunner`) or an ONNX
    export (:class:`app.onnx_runner.OnnxRunner`)."""

    description: ModelDescription
    served: ServedModel
    device: torch.device
    device_lost: str | None  # why the device can serve no more batches (see DeviceLost); None while it can

    def prepare(self, frames: list[np.ndarray]) -> object:
        """One clip's RGB uint8 frames -> one item of a ``predict`` batch (runs on a decode thread)."""
        ...

    def to_device(self, prepared_on_host) -> object:
        """``ModelDescription.prepare_on_host``'s result -> one item of a ``predict`` batch."""
        ...

    def predict(self, clips: list) -> np.ndarray:
        """Probabilities ``[B, A]`` for a batch of prepared clips (runs on the model thread)."""
        ...

    def predict_embedded(
        self, clips: list
    ) -> tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``predict``'s probabilities and the clips' appearance embeddings ``[B, W]`` (None where the runner has
        none), and where the model keeps them the CLIP image embeddings ``[B, E]``: what the batcher runs."""
        ...

    def warm_up(self, batch_sizes: list[int]) -> None: ...
