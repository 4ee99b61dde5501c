"""``python -m model.export CHECKPOINT --format onnx --out FILE.onnx``: the network as an ONNX file for ONNX Runtime,
Triton, DeepStream or TensorRT, carrying everything the checkpoint knows.

What is exported: preprocessed, normalised clips ``frames [batch, T, 3, S, S]`` (float32) -> ``logits [batch, A]``
and ``embedding [batch, E]``, the appearance embedding of the same forward pass (``VTFPAR.forward_with_embedding``,
unit length; the service stores it per track for similar search).
- Not the decoding or the resize: frames arrive in every size (tracker crops differ frame to frame) and each
  deployment already has its own pipeline for them (FFmpeg, NVDEC + nvvideoconvert, DALI). The metadata says
  exactly what to do (``preprocessing``: square by padding, antialiased bilinear resize, mean and std).
- Not the sigmoid, temperatures or thresholds: they are per-attribute data that calibration changes without
  touching the weights, so they travel as metadata (``thresholds``, ``temperatures``) and the file stays valid
  for every calibration of the same weights; probability = sigmoid(logit / temperature).

The batch axis is dynamic; T (the preset's frames) and S (its image size) are fixed, as the network is built for
them. The ONNX file's ``metadata_props`` hold one JSON document under the key ``vtfpar``: the checkpoint's own
metadata (format version, config, schema, thresholds, temperatures, calibration, backbone, preprocessing,
provenance), plus ``source`` (the checkpoint's sha256 and file name) and ``onnx`` (input and output names and
shapes, opset, exporter). The service serves such a file as it serves the checkpoint (``VTFPAR_CHECKPOINT``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import METADATA_KEY, CheckpointError, LoadedCheckpoint, load_checkpoint, parse_metadata
from .files import FILE_MODE
from .network import VTFPAR

INPUT_NAME, OUTPUT_NAME, EMBEDDING_NAME = "frames", "logits", "embedding"
OPSET = 18
# Largest batch the exported graph promises to take; ONNX Runtime itself has no limit, TensorRT builds for a range.
MAX_BATCH = 1024
# A clean export of a float32 network differs from torch only by reordered float sums: logits agree to ~1e-6.
DEFAULT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export failed, its result does not compute what the checkpoint computes, or a file is no export."""


def onnx_metadata(loaded: LoadedCheckpoint) -> dict:
    """The JSON document stored under ``vtfpar`` in the ONNX file's metadata."""
    config, schema = loaded.model.config, loaded.model.schema
    return {
        **loaded.metadata,
        "source": {"sha256": loaded.digest, "file": Path(loaded.path).name},
        "onnx": {
            "input": {"name": INPUT_NAME, "shape": ["batch", config.frames, 3, config.image_size, config.image_size]},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(schema)], "meaning": "logits"},
            "embedding": {
                "name": EMBEDDING_NAME,
                "shape": ["batch", loaded.model.appearance_width],
                "meaning": "appearance embedding, unit length (cosine similarity compares people)",
            },
            "probability": "sigmoid(logit / temperature), temperature 1 when temperatures is null",
            "opset": OPSET,
            "exporter": f"torch {torch.__version__}",
        },
    }


class _BothOutputs(nn.Module):
    """The network as the export computes it: logits and appearance embeddings from one forward pass."""

    def __init__(self, model: VTFPAR) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_embedding(frames)


def export_onnx(loaded: LoadedCheckpoint, out: str | os.PathLike) -> None:
    """Write ``loaded.model`` as ONNX to ``out`` atomically, with its metadata."""
    onnx = _onnx()
    model = loaded.model.eval().cpu()
    config = model.config
    example = torch.zeros(2, config.frames, 3, config.image_size, config.image_size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The exporter narrates each step on stdout; a failure raises with its own report.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            _BothOutputs(model),
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, EMBEDDING_NAME],
            dynamic_shapes={"frames": {0: batch}},
            opset_version=OPSET,
            optimize=True,
        )
    if program is None:  # only the legacy exporter returns nothing
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    proto.producer_name = "vtfpar"
    proto.doc_string = (
        f"VTFPAR++ {config.name}: {INPUT_NAME} -> {OUTPUT_NAME}, {EMBEDDING_NAME}; metadata key {METADATA_KEY!r}"
    )
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(onnx_metadata(loaded))})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    try:
        onnx.save_model(proto, tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_onnx_metadata(path: str | os.PathLike, data: bytes | None = None) -> dict:
    """The ``vtfpar`` document of an ONNX export (``data``: the file's bytes, when already read), checked for
    format version. Parsing the protobuf runs no code from the file."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(Path(path).read_bytes() if data is None else data)
    except (DecodeError, OSError) as exc:
        raise ExportError(f"{path} is not a readable ONNX model: {exc}") from None
    return parse_metadata(Path(path), {prop.key: prop.value for prop in proto.metadata_props})


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX files need the onnx extra: pip install 'vtfpar-serve[onnx]'") from None
    return onnx


def max_differences(loaded: LoadedCheckpoint, onnx_path: str | os.PathLike, batch: int = 3) -> tuple[float, float]:
    """Largest |difference| between torch and ONNX Runtime (CPU) on the same random clips: of the logits, and of
    the appearance embeddings."""
    import onnxruntime

    config = loaded.model.config
    clips = torch.randn(batch, config.frames, 3, config.image_size, config.image_size, generator=torch.manual_seed(0))
    with torch.inference_mode():
        expected = [part.numpy() for part in loaded.model.forward_with_embedding(clips)]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME, EMBEDDING_NAME], {INPUT_NAME: clips.numpy()})
    logits, embedding = (float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    return logits, embedding


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--format", choices=["onnx"], default="onnx")
    parser.add_argument("--out", type=Path, required=True, help="the file to write, e.g. model.onnx")
    parser.add_argument(
        "--backbone-weights", help="CLIP weights for a checkpoint saved without its backbone (a local file or folder)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest |logit| (and embedding) difference from torch allowed in ONNX Runtime's check of the file "
        "(default %(default)g)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip running the file in ONNX Runtime")
    args = parser.parse_args(argv)
    try:
        loaded = load_checkpoint(args.checkpoint, backbone_weights=args.backbone_weights)
        export_onnx(loaded, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) from {args.checkpoint}")
        if not args.no_check:
            logits, embedding = max_differences(loaded, args.out)
            print(f"ONNX Runtime (CPU) vs torch: largest difference {logits:.2e} (logits), {embedding:.2e} (embedding)")
            for name, difference in (("logits", logits), ("embedding", embedding)):
                if not difference <= args.tolerance:
                    raise ExportError(
                        f"the exported {name} differ from torch's by {difference:.2e} > {args.tolerance:g}"
                    )
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
