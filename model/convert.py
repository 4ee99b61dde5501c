"""``vtfpar convert`` / ``python -m model.convert``: the authors' released VTFPAR++ checkpoint as this project's.

The authors' ``train.py`` (Event-AHU/OpenPAR, ``VTFPAR++/``) saves ``{'epoch', 'model_state_dict'}`` with
``torch.save``: the frozen CLIP ViT-B/16 image tower, the side nets, the fusion block, the heads and the BatchNorm,
but no text tower, no phrases and no config. This converter reads it with ``torch.load(weights_only=True)`` only,
checks every tensor name and shape against the authors' model (``reference_checkpoint.json``: their MARS model's
517 tensors and their 43 MARS phrases), maps each tensor onto this project's modules or lists it as one the
reference never uses, computes the text embeddings once from the authors' phrases with the text tower of
``--clip-weights``, and writes a ``vtfpar-b16`` checkpoint that embeds the image tower from the file, so serving
needs no download.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from .backbone import (
    BackboneError,
    backbone_source,
    file_sha256,
)
from .checkpoint import listed_names, save_checkpoint, tensor_problems
from .config import PADDING_MODES, get_config
from .network import VTFPAR, build_backbone, phrase_embeddings
from .schema import AttributeSchema, list_schemas, load_schema, schema_from_dict

REFERENCE = json.loads((Path(__file__).parent / "reference_checkpoint.json").read_text())
PRESET = "vtfpar-b16"
DATASETS = ("mars", "duke")
# The authors trained and tested on frames padded to squares beforehand; the geometry is not published. The one
# padding code they did publish (VTFPAR++/demo/gui_detection.py, make_square) centres the crop on black, which is
# also how this project trains. "right" (their index file is called mars_pad_right.pkl) and "stretch" (what their
# code does to unpadded crops) are one option away.
DEFAULT_PADDING = "centre"
WRAPPER_KEYS = {"epoch", "model_state_dict"}
HEAD = re.compile(r"weight_layer\.(\d+)\.(weight|bias)")
# fp16 rounding changes a value by at most 2**-11 of itself; anything well above that is another CLIP.
SAME_TOWER_TOLERANCE = 1e-3
# Parts of this project's tower the reference file does not hold (it keeps no ln_post/proj); the network never
# runs them, but the tower's state dict and digest include them, so they come from --clip-weights.
FROM_CLIP_WEIGHTS = ("backbone.visual.ln_post.weight", "backbone.visual.ln_post.bias", "backbone.visual.proj")

# Reference tensors never on the reference's forward path (67 tensors, 9,944,833 values), checked first.
IGNORED = (
    (r"clip_visual_extractor\.resblocks\.11\..+", "CLIP block 12: the reference computes it and never reads it"),
    (r"spatial_sidenet\.vit_model\.blocks\.7\..+", "spatial side block 8: built, never run"),
    (r"crossframe_sidenet\.vit_model\.blocks\.[67]\..+", "temporal side blocks 7-8: one block per frame, 6 frames"),
    (r"crossframe_sidenet\.vit_model\.patch_embed\..+", "the temporal side net never sees pixels"),
    (r"crossframe_sidenet\.projection_layers\..+", "built, never run"),
    (r"(visual_embed|spa_embed|tem_embed)\..+", "built, never run"),
    (r"w_temporal", "built, never run"),
)
# Reference name -> this project's name; True where a 1x1 convolution becomes a Linear ([out, in, 1(, 1)] ->
# [out, in]). Heads (weight_layer.i) are stacked separately.
RENAMED = (
    (r"clip_visual_extractor\.resblocks\.(.+)", r"backbone.visual.transformer.resblocks.\1", False),
    (r"clip_visual_extractor\.(.+)", r"backbone.visual.\1", False),
    (r"spatial_sidenet\.vit_model\.patch_embed\.(.+)", r"spatial.patch_embed.\1", False),
    (r"spatial_sidenet\.vit_model\.pos_embed", r"spatial.tokens.pos_embed", False),
    (r"spatial_sidenet\.(cls_embed|cls_pos_embed)", r"spatial.tokens.\1", False),
    (r"spatial_sidenet\.vit_model\.blocks\.(.+)", r"spatial.blocks.\1", False),
    (r"spatial_sidenet\.fusion_layers\.layer_(\d+)\.input_proj\.0\.(.+)", r"spatial.tap_projections.\1.norm.\2", False),
    (r"spatial_sidenet\.fusion_layers\.layer_(\d+)\.input_proj\.1\.(.+)", r"spatial.tap_projections.\1.proj.\2", True),
    (r"crossframe_sidenet\.vit_model\.pos_embed", r"temporal.tokens.pos_embed", False),
    (r"crossframe_sidenet\.(cls_embed|cls_pos_embed)", r"temporal.tokens.\1", False),
    (r"crossframe_sidenet\.vit_model\.blocks\.(.+)", r"temporal.blocks.\1", False),
    (r"crossframe_sidenet\.frist_linear\.(.+)", r"temporal.first_frame_projection.\1", False),
    (r"crossframe_sidenet\.fusion_layers\.layer_(\d+)\.ln\.(.+)", r"temporal.tap_projections.\1.norm.\2", False),
    (r"crossframe_sidenet\.fusion_layers\.layer_(\d+)\.input_proj\.(.+)", r"temporal.tap_projections.\1.proj.\2", True),
    (r"word_embed\.(.+)", r"text_projection.\1", False),
    (r"blocks\.7\.(.+)", r"fusion.0.\1", False),  # the reference's one-block slice keeps the key "7"
    (r"norm\.(.+)", r"fusion_norm.\1", False),
    (r"bn\.(.+)", r"logit_norm.\1", False),
)


class ConvertError(ValueError):
    """A reference checkpoint (or a converter option) that cannot be converted; the message says why."""


@dataclass
class Mapping:
    tensors: dict[str, torch.Tensor]  # this project's name -> tensor
    sources: dict[str, list[str]]  # this project's name -> the reference tensors it was made from
    ignored: dict[str, str]  # reference name -> why the reference never uses it


def reference_layout(num_attributes: int) -> dict[str, list[int]]:
    """Names and shapes of the authors' state dict for a model with ``num_attributes`` heads."""
    layout = {
        name: shape
        for name, shape in REFERENCE["tensors"].items()
        if not HEAD.fullmatch(name) and not name.startswith("bn.")
    }
    width = REFERENCE["tensors"]["weight_layer.0.weight"][1]
    for index in range(num_attributes):
        layout[f"weight_layer.{index}.weight"] = [1, width]
        layout[f"weight_layer.{index}.bias"] = [1]
    for stat in ("weight", "bias", "running_mean", "running_var"):
        layout[f"bn.{stat}"] = [num_attributes]
    layout["bn.num_batches_tracked"] = []
    return layout


def converted_schema(dataset: str) -> AttributeSchema:
    """This project's schema with the phrases the released heads were trained with, column by column.

    MARS: the authors' list (their dataset/preprocess/mars.py) has 'bottom skirt' at column 1 and 'bottom short' at
    column 8, the reverse of this project's ``mars`` phrases; the columns keep their MARS label meaning. Duke: the
    authors' list equals this project's ``duke`` schema.
    """
    schema = load_schema(dataset)
    if dataset == "duke":
        return schema
    phrases = iter(REFERENCE["mars_phrases_in_column_order"])
    data = schema.to_dict()
    for group in data["groups"]:  # groups and their attributes are listed in column order
        for attribute in group["attributes"]:
            attribute["phrase"] = next(phrases)
    data["description"] = (
        f"{schema.description} Phrases as the authors' released weights were trained with: column 1 "
        "'bottom skirt', column 8 'bottom short' (their dataset/preprocess/mars.py)."
    )
    return schema_from_dict(data, source="the authors' MARS phrases")


def _weights_only_refusal(exc: pickle.UnpicklingError) -> str | None:
    """What a weights-only load refused (e.g. 'Unsupported global: GLOBAL argparse.Namespace ...'), if it did."""
    text = str(exc)
    if not text.startswith("Weights only load failed"):
        return None
    found = re.search(r"WeightsUnpickler error: (.+?)(?: Please use|$)", text, re.MULTILINE)
    return found.group(1).strip() if found else "objects other than tensors"


def read_reference(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The state dict and epoch of the authors' wrapper (or of a bare state dict), never unpickling objects."""
    if not path.is_file():
        raise ConvertError(f"{path} does not exist or is not a file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _weights_only_refusal(exc)
        if refused is None:
            raise ConvertError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from None
        raise ConvertError(
            f"{path} holds more than tensors ({refused}); this converter only reads plain tensors "
            "(torch.load(weights_only=True)) and never unpickles other objects. Re-save the bare state dict "
            "with torch.save where you trust the file."
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError, ValueError) as exc:
        raise ConvertError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    epoch = None
    state = loaded
    if isinstance(loaded, dict) and "model_state_dict" in loaded:
        extra = sorted(str(key) for key in set(loaded) - WRAPPER_KEYS)
        if extra:
            raise ConvertError(
                f"{path}: unexpected entries {extra} next to 'model_state_dict'; the authors' train.py saves "
                "only {'epoch', 'model_state_dict'}"
            )
        state, epoch = loaded["model_state_dict"], loaded.get("epoch")
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
            raise ConvertError(f"{path}: 'epoch' should be an int, got {type(epoch).__name__}")
    if not isinstance(state, dict) or not state:
        raise ConvertError(
            f"{path} holds a {type(state).__name__}, neither the authors' {{'epoch', 'model_state_dict'}} wrapper "
            "nor a state dict"
        )
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConvertError(f"{path}: entries that are not named tensors, so not a state dict: {not_tensors[:5]}")
    if all(name.startswith("module.") for name in state):  # saved from a DataParallel / DDP wrapper
        state = {name.removeprefix("module."): tensor for name, tensor in state.items()}
    return state, epoch


def check_attribute_count(state: dict[str, torch.Tensor], dataset: str, path: Path) -> None:
    """A model with another number of heads gets the schema it looks like, instead of a size mismatch."""
    found = len({match.group(1) for name in state if (match := HEAD.fullmatch(name))})
    wanted = len(load_schema(dataset))
    if found in (0, wanted):  # no heads at all: the layout check names what is missing
        return
    same_size = [name for name in list_schemas() if len(load_schema(name)) == found]
    convertible = [name for name in same_size if name in DATASETS]
    if convertible:
        hint = f"it looks like a {convertible[0]!r} model ({found} attributes): pass --dataset {convertible[0]}"
    elif same_size:
        hint = (
            f"{found} attributes is this project's {same_size[0]!r} schema, which the authors' VTFPAR++ code does "
            f"not train; this converter reads their {' and '.join(DATASETS)} models (--dataset)"
        )
    else:
        sizes = ", ".join(f"{name} {len(load_schema(name))}" for name in DATASETS)
        hint = f"no schema here has {found} attributes; this converter reads the authors' models for {sizes}"
    raise ConvertError(
        f"{path}: the checkpoint has {found} attribute heads (weight_layer.*), but the {dataset!r} schema has "
        f"{wanted} (--dataset {dataset}): {hint}"
    )


def check_layout(state: dict[str, torch.Tensor], num_attributes: int, path: Path) -> None:
    """Every tensor of the authors' model present, nothing else, every shape as theirs; else name them."""
    problems = tensor_problems(reference_layout(num_attributes), state)
    if problems:
        raise ConvertError(
            f"{path} is not the authors' VTFPAR++ ViT-B/16 model with {num_attributes} attributes: "
            + ", ".join(problems)
        )


def map_tensors(state: dict[str, torch.Tensor]) -> Mapping:
    """Each reference tensor under this project's name, or in ``ignored`` with the reason; anything else refused."""
    tensors: dict[str, torch.Tensor] = {}
    sources: dict[str, list[str]] = {}
    ignored: dict[str, str] = {}
    heads: dict[str, dict[int, torch.Tensor]] = {"weight": {}, "bias": {}}
    unknown = []
    for name, tensor in state.items():
        if reason := next((why for pattern, why in IGNORED if re.fullmatch(pattern, name)), None):
            ignored[name] = reason
        elif head := HEAD.fullmatch(name):
            heads[head.group(2)][int(head.group(1))] = tensor
        elif rule := next((rule for rule in RENAMED if re.fullmatch(rule[0], name)), None):
            pattern, replacement, conv_to_linear = rule
            target = re.sub(f"^{pattern}$", replacement, name)
            if conv_to_linear and tensor.ndim > 2:
                tensor = tensor.flatten(1)
            tensors[target] = tensor
            sources[target] = [name]
        else:
            unknown.append(name)
    if unknown:
        raise ConvertError(f"tensors the converter does not recognise: {listed_names(sorted(unknown))}")
    for part, by_index in heads.items():
        if by_index:
            order = sorted(by_index)  # weight_layer.i is Linear(W, 1): [1, W] and [1] -> rows of [A, W] and [A]
            tensors[f"heads.{part}"] = torch.cat([by_index[i] for i in order])
            sources[f"heads.{part}"] = [f"weight_layer.{i}.{part}" for i in order]
    return Mapping(tensors=tensors, sources=sources, ignored=ignored)


def _load_into(model: VTFPAR, mapping: Mapping) -> None:
    try:
        missing, unexpected = model.load_state_dict(mapping.tensors, strict=False)
    except RuntimeError as exc:
        raise ConvertError(f"this project's model does not take the mapped tensors: {exc}") from None
    not_filled = sorted(set(missing) - {"text_embeddings", *FROM_CLIP_WEIGHTS})
    if not_filled or unexpected:
        # Only reachable if this project's modules drift from the mapping above.
        raise ConvertError(
            f"the mapping no longer fits this project's model: unfilled {not_filled}, extra {unexpected}"
        )


def _relative_difference(mapping: Mapping, current: dict[str, torch.Tensor]) -> float:
    """Largest ``max|file - clip| / max|clip|`` over the tower's tensors: about 2**-11 at most when the file holds
    the --clip-weights tower rounded to fp16, far more for another CLIP."""
    return max(
        (
            (mapping.tensors[name].float() - current[name]).abs().max() / current[name].abs().max().clamp_min(1e-12)
        ).item()
        for name in mapping.tensors
        if name.startswith("backbone.")
    )


def _dtype_names(tensors: list[torch.Tensor]) -> list[str]:
    return sorted({str(t.dtype).removeprefix("torch.") for t in tensors})


def convert(
    reference: str | Path,
    out: str | Path,
    dataset: str = "mars",
    clip_weights: str = "openai",
    padding: str = DEFAULT_PADDING,
    log=print,
) -> str:
    """Convert the authors' checkpoint at ``reference`` into this project's checkpoint at ``out``; its sha256."""
    reference = Path(reference)
    if dataset not in DATASETS:
        raise ConvertError(f"--dataset {dataset!r}: the authors' models are {DATASETS}")
    if padding not in PADDING_MODES:
        raise ConvertError(f"--padding {padding!r}: expected one of {PADDING_MODES}")
    state, epoch = read_reference(reference)
    check_attribute_count(state, dataset, reference)
    schema = converted_schema(dataset)
    check_layout(state, len(schema), reference)
    mapping = map_tensors(state)
    tower = [mapping.tensors[name] for name in mapping.tensors if name.startswith("backbone.")]
    log(
        f"read {reference.name}: {len(state)} tensors ({'no epoch' if epoch is None else f'epoch {epoch}'}); "
        f"{len(state) - len(mapping.ignored)} mapped, "
        f"{len(mapping.ignored)} ignored (never used by the reference's forward pass); image tower "
        f"{'/'.join(_dtype_names(tower))}"
    )

    config = get_config(
        PRESET,
        name=f"{PRESET}-authors-{dataset}",
        description=f"The authors' released VTFPAR++ weights ({dataset}), converted from {reference.name}.",
        clip_weights=None,  # the tower is embedded from the reference file; nothing else rebuilds it exactly
        padding=padding,
    )
    try:
        clip, backbone = build_backbone(config, clip_weights)
    except BackboneError as exc:
        raise ConvertError(f"--clip-weights: {exc}") from None
    text_embeddings = phrase_embeddings(clip, config, clip_weights, schema.phrases)
    log(f"text embeddings: {len(schema)} {dataset} phrases, {config.clip_arch} text tower of {clip_weights!r}")
    del clip  # the text tower ran once; only the image tower is kept
    model = VTFPAR(config, schema, backbone, text_embeddings)
    tower_difference = _relative_difference(mapping, model.state_dict())
    _load_into(model, mapping)
    # The digest of the tower as stored (fp32, after any cast), so a loader can verify the embedded weights.
    model.backbone.fingerprint = model.backbone.digest()
    model.eval()
    log(f"image tower: largest difference to the tower of --clip-weights {tower_difference:.3g} (relative)")
    if tower_difference > SAME_TOWER_TOLERANCE:
        log(
            "warning: the file's image tower is not the tower of --clip-weights; the text embeddings are only right "
            "with the CLIP the authors used (OpenAI ViT-B/16)"
        )

    provenance = {
        "converter": "model.convert",
        "source": "the authors' released VTFPAR++ weights (Event-AHU/OpenPAR, VTFPAR++/train.py)",
        "source_file": reference.name,
        "source_sha256": file_sha256(reference),
        "epoch": epoch,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "phrases": schema.phrases,
        "ignored_tensors": mapping.ignored,
        "text_tower": backbone_source(config.clip_arch, clip_weights),
        "image_tower": {
            "from": "the source file",
            "dtype_in_file": _dtype_names(tower),
            "stored_as": config.backbone_dtype,
            "ln_post_and_proj_from": clip_weights,  # not in the file and never run; kept for the tower's layout
            "relative_difference_to_clip_weights": tower_difference,
        },
        "preprocessing": {
            "image_size": config.image_size,
            "mean": list(config.mean),
            "std": list(config.std),
            "padding": padding,
            "authors": "224x224, mean = std = 0.5, PIL bilinear resize of frames padded to squares beforehand "
            "(pad_mars_dataset); test frames: 6 in random order (vtfpar evaluate --sampling random_subset)",
        },
    }
    try:
        digest = save_checkpoint(model, out, provenance=provenance, embed_backbone=True)
    except OSError as exc:
        raise ConvertError(f"cannot write {out}: {exc}") from None
    log(f"wrote {out} (sha256 {digest}): schema {schema.name!r}, padding {padding!r}, backbone embedded")
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtfpar convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reference", help="the authors' checkpoint (.pth), as their train.py saves it")
    parser.add_argument("--out", required=True, help="the .safetensors checkpoint to write")
    parser.add_argument("--dataset", choices=DATASETS, default="mars", help="which of the authors' models it is")
    parser.add_argument(
        "--clip-weights",
        default="openai",
        help="CLIP ViT-B/16 whose text tower encodes the phrases: open_clip's 'openai' tag (downloaded once, needs "
        "internet), a local weights file or local-dir:FOLDER",
    )
    parser.add_argument(
        "--padding",
        choices=PADDING_MODES,
        default=DEFAULT_PADDING,
        help="how serving turns a frame into a square (recorded in the checkpoint)",
    )
    args = parser.parse_args(argv)
    try:
        convert(args.reference, args.out, args.dataset, args.clip_weights, args.padding)
    except ConvertError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
