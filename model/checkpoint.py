"""The checkpoint: the only contract between training and serving.

One ``.safetensors`` file. Tensors: the trainable weights, BatchNorm statistics, the precomputed attribute text
embeddings (``text_embeddings``) and, optionally, the frozen backbone (``backbone.*``). The safetensors header
carries one JSON document under the key ``vtfpar``: format version, full model config, attribute schema with
phrases, backbone identity, preprocessing, per-attribute thresholds (and temperatures, with the record of what
they were calibrated on, when the checkpoint was calibrated) and free-form provenance. Loading never unpickles
anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors

from .backbone import BackboneError, backbone_source, file_sha256
from .config import ConfigError, VTFPARConfig
from .files import write_safetensors
from .network import VTFPAR, build_backbone, text_tower
from .schema import AttributeSchema, SchemaError, schema_from_dict

FORMAT_VERSION = 1
METADATA_KEY = "vtfpar"
BACKBONE_PREFIX = "backbone."
TEXT_TOWER_PREFIX = "text_tower."  # kept by models with clip_image_embedding; embedded as the backbone is


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names what does not match."""


@dataclass
class LoadedCheckpoint:
    model: VTFPAR
    metadata: dict
    digest: str
    path: str


def save_checkpoint(
    model: VTFPAR, path: str | os.PathLike, provenance: dict | None = None, embed_backbone: bool | None = None
) -> str:
    """Write ``model`` to ``path`` atomically; returns the file's sha256.

    The backbone is embedded when ``embed_backbone`` is true, and by default when its weights have no public
    or local source (``clip_weights`` is None), since nothing else could rebuild them.
    """
    config = model.config
    if embed_backbone is None:
        embed_backbone = config.clip_weights is None
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name.startswith((BACKBONE_PREFIX, TEXT_TOWER_PREFIX)) and not embed_backbone:
            continue
        tensors[name] = tensor.detach().cpu().contiguous()
    metadata = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "schema": model.schema.to_dict(),
        "thresholds": [float(t) for t in model.thresholds],
        "temperatures": None if model.temperatures is None else [float(t) for t in model.temperatures],
        "calibration": model.calibration,
        "text_embeddings": {
            "tensor": "text_embeddings",
            "shape": list(model.text_embeddings.shape),
            "phrases": model.schema.phrases,
            "encoder": f"{config.clip_arch} text tower",
        },
        "backbone": {
            **backbone_source(config.clip_arch, config.clip_weights),
            "tower_sha256": model.backbone.fingerprint,
            "embedded": bool(embed_backbone),
            "dtype": config.backbone_dtype,
            "taps": list(config.taps),
        },
        "preprocessing": {
            "image_size": config.image_size,
            "mean": list(config.mean),
            "std": list(config.std),
            "padding": config.padding,
            "resize": "bilinear, antialiased",
            "frames": config.frames,
            "sampling": "segment_middle",
        },
        "provenance": provenance or {},
    }
    write_safetensors(path, tensors, {METADATA_KEY: json.dumps(metadata)})
    return file_sha256(path)


def parse_metadata(path: Path, header: dict) -> dict:
    """The VTFPAR document of a file's string metadata (a safetensors header's ``__metadata__``, an ONNX export's
    ``metadata_props``), checked for format version."""
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path} has no VTFPAR metadata (key {METADATA_KEY!r})")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its metadata is not valid JSON: {exc}") from None
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this build reads version {FORMAT_VERSION})"
        )
    return metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """The checkpoint's JSON metadata, checked for format version; reads only the header."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or corrupt?): {exc}"
        ) from None
    return parse_metadata(path, header)


def _read_once(path: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """Metadata, tensors and sha256 of one read of the file, so that a file replaced meanwhile (a trainer
    rewriting best.safetensors) cannot serve one file's weights under another's version. safetensors' readers
    open the file themselves, so the header (8-byte length, then JSON) is parsed here from the bytes read."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    corrupt = f"{path} is not a readable safetensors checkpoint (truncated or corrupt?)"
    length = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < length <= len(data) - 8:
        raise CheckpointError(corrupt)
    try:
        header = json.loads(data[8 : 8 + length])
        tensors = load_safetensors(data)
    except (UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"{corrupt}: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(corrupt)
    return parse_metadata(path, header.get("__metadata__") or {}), tensors, hashlib.sha256(data).hexdigest()


def listed_names(names: list[str], limit: int = 8) -> str:
    """``names`` for a message: the first ``limit``, then how many more."""
    return f"{names[:limit]}{f' and {len(names) - limit} more' if len(names) > limit else ''}"


def tensor_problems(expected: dict[str, list[int]], found: dict[str, torch.Tensor], limit: int = 8) -> list[str]:
    """What keeps ``found`` tensors from matching the ``expected`` shapes by name: unknown, missing and
    wrong-shape tensors, each named (at most ``limit`` of a kind); empty when they match."""
    unknown = sorted(set(found) - set(expected))
    missing = sorted(set(expected) - set(found))
    wrong = [
        f"{name}: file {list(found[name].shape)}, expected {expected[name]}"
        for name in sorted(set(expected) & set(found))
        if list(found[name].shape) != expected[name]
    ]
    problems = []
    if unknown:
        problems.append(f"unknown tensors {listed_names(unknown, limit)}")
    if missing:
        problems.append(f"missing tensors {listed_names(missing, limit)}")
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong[:limit]))
    return problems


@dataclass(frozen=True)
class ModelFacts:
    """What a checkpoint's metadata says the model is and how its logits become answers."""

    config: VTFPARConfig
    schema: AttributeSchema
    thresholds: list[float]
    temperatures: list[float] | None
    calibration: dict | None


def model_facts(path: str | os.PathLike, metadata: dict) -> ModelFacts:
    """The config, schema and decision parameters of a checkpoint's (or an ONNX export's) metadata, checked."""
    try:
        config = VTFPARConfig.from_dict(metadata["config"])
        schema = schema_from_dict(metadata["schema"], source=f"{path} schema")
        thresholds = [float(t) for t in metadata["thresholds"]]
        # Checkpoints written before calibration existed have neither field.
        temperatures = metadata.get("temperatures")
        temperatures = None if temperatures is None else [float(t) for t in temperatures]
        calibration = metadata.get("calibration")
    except (KeyError, TypeError, ValueError, ConfigError, SchemaError) as exc:
        raise CheckpointError(f"{path}: incomplete or invalid metadata: {exc}") from None
    if len(thresholds) != len(schema) or not all(0.0 < t < 1.0 for t in thresholds):
        raise CheckpointError(
            f"{path}: needs one threshold in (0, 1) per attribute ({len(schema)}), got {len(thresholds)}"
        )
    if temperatures is not None and (
        len(temperatures) != len(schema) or not all(math.isfinite(t) and t > 0 for t in temperatures)
    ):
        raise CheckpointError(
            f"{path}: needs one finite temperature > 0 per attribute ({len(schema)}), got {len(temperatures)}"
        )
    if calibration is not None and not isinstance(calibration, dict):
        raise CheckpointError(f"{path}: 'calibration' must be a JSON object or null")
    return ModelFacts(config, schema, thresholds, temperatures, calibration)


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    backbone_weights: str | None = None,
    clip_image_embedding: bool = False,
) -> LoadedCheckpoint:
    """Rebuild the model a checkpoint describes and load its weights.

    ``backbone_weights`` overrides where the frozen CLIP weights come from (e.g. a local file on a host without
    the hub); whatever the source, the tower must hash to the digest recorded at training time.
    ``clip_image_embedding`` serves a checkpoint made without it with it (free-text search): the tower's blocks
    after the last tap and the text tower come from its CLIP weights source, so the backbone must not be embedded.
    """
    path = Path(path)
    metadata, tensors, digest = _read_once(path)
    facts = model_facts(path, metadata)
    config, schema = facts.config, facts.schema
    try:
        recorded = metadata["backbone"]
    except KeyError as exc:
        raise CheckpointError(f"{path}: incomplete or invalid metadata: {exc}") from None
    if "text_embeddings" not in tensors:
        raise CheckpointError(f"{path}: missing tensor 'text_embeddings'")

    embedded = bool(recorded.get("embedded"))
    if clip_image_embedding and not config.clip_image_embedding:
        if embedded:
            raise CheckpointError(
                f"{path}: cannot add the CLIP image embedding and text tower: the checkpoint embeds its CLIP tower "
                "cut after the last tap and no text tower (train it with clip_image_embedding instead)"
            )
        config = config.replace(clip_image_embedding=True)
    weights = None if embedded else (backbone_weights or config.clip_weights)
    try:
        clip, backbone = build_backbone(config, weights)
        # Not embedded: from the same weights source as the image tower (checked by its digest below).
        text = text_tower(clip, config, weights)
    except BackboneError as exc:
        raise CheckpointError(f"{path}: cannot build its backbone: {exc}") from None
    if not embedded and backbone.fingerprint != recorded.get("tower_sha256"):
        raise CheckpointError(
            f"{path}: backbone mismatch: the checkpoint was trained on {recorded.get('arch')} weights "
            f"{recorded.get('weights')!r} (tower sha256 {str(recorded.get('tower_sha256'))[:12]}...), but the weights "
            f"loaded from {weights!r} hash to {backbone.fingerprint[:12]}..."
        )
    try:
        model = VTFPAR(config, schema, backbone, tensors["text_embeddings"], text)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    expected = {
        k: v
        for k, v in model.state_dict().items()
        if embedded or not k.startswith((BACKBONE_PREFIX, TEXT_TOWER_PREFIX))
    }
    problems = tensor_problems({name: list(tensor.shape) for name, tensor in expected.items()}, tensors)
    if problems:
        raise CheckpointError(f"{path} does not match the model its metadata describes: " + ", ".join(problems))
    model.load_state_dict(tensors, strict=False)
    if embedded:
        stored = backbone.digest()
        if stored != recorded.get("tower_sha256"):
            raise CheckpointError(
                f"{path}: backbone mismatch: its embedded {recorded.get('arch')} tower hashes to {stored[:12]}..., "
                f"not to the recorded {str(recorded.get('tower_sha256'))[:12]}...: the backbone.* tensors were "
                "changed after the checkpoint was written"
            )
        backbone.fingerprint = stored
    model.thresholds, model.temperatures, model.calibration = facts.thresholds, facts.temperatures, facts.calibration
    model.eval().to(device)
    return LoadedCheckpoint(model=model, metadata=metadata, digest=digest, path=str(path))
