"""vtfpar convert on a random state dict with exactly the names and shapes of the authors' MARS checkpoint.

Nothing is downloaded: the text tower comes from a random CLIP ViT-B/16 (QuickGELU) saved to a local file. The
paper-size model is built once per module (conversion, loading and the directly assembled model).
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import load_checkpoint, load_schema
from model.backbone import FrozenCLIPTaps, build_clip, encode_phrases, file_sha256, tower_fingerprint
from model.config import get_config
from model.convert import (
    FROM_CLIP_WEIGHTS,
    REFERENCE,
    check_attribute_count,
    check_layout,
    converted_schema,
    main,
    map_tensors,
    read_reference,
    reference_layout,
)
from model.network import VTFPAR
from model.schema import schema_from_dict
from training.evaluate import main as evaluate_main
from training.synthetic.tracklets import generate

ROOT = Path(__file__).resolve().parents[2]
ARCH = "ViT-B-16-quickgelu"
EPOCH = 12
REFERENCE_PHRASES = REFERENCE["mars_phrases_in_column_order"]


def random_reference_state(layout: dict, seed: int = 1, tower_dtype=torch.float16) -> dict:
    """Random weights with the authors' names and shapes; the CLIP tower in fp16, as a GPU run may save it."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(5000)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith(".weight") and len(shape) == 1:  # every 1-D weight here is a norm's scale
            state[name] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.02 * torch.randn(shape, generator=generator)
        if name.startswith("clip_visual_extractor."):
            state[name] = state[name].to(tower_dtype)
    return state


def shapes_only_state(layout: dict) -> dict:
    """Right names and shapes, one stored value each: for refusals that must happen before any value is read."""
    return {name: torch.zeros(()).expand(shape) for name, shape in layout.items()}


def run_convert(*args) -> tuple[int, str]:
    """The CLI in-process: exit code and everything it printed."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, output.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def random_clip(workdir):
    """A random CLIP of the paper's architecture, in memory and as a local weights file (for --clip-weights)."""
    torch.manual_seed(0)
    clip = build_clip(ARCH, None)
    path = workdir / "clip-random.safetensors"
    save_file(clip.state_dict(), str(path))
    return clip, path


@pytest.fixture(scope="module")
def reference_state():
    return random_reference_state(REFERENCE["tensors"])


@pytest.fixture(scope="module")
def reference_file(workdir, reference_state):
    path = workdir / "epoch12.pth"
    torch.save({"epoch": EPOCH, "model_state_dict": reference_state}, path)
    return path


@pytest.fixture(scope="module")
def converted(workdir, reference_file, random_clip):
    out = workdir / "vtfpar-b16-mars.safetensors"
    code, output = run_convert(reference_file, "--out", out, "--clip-weights", random_clip[1], "--padding", "right")
    assert code == 0, output
    return out, output


@pytest.fixture(scope="module")
def loaded(converted):
    return load_checkpoint(converted[0])


@pytest.fixture(scope="module")
def assembled(reference_state, random_clip):
    """The project's network filled straight from the reference tensors, module by module, as the mapping table of
    the reference-checkpoint doc says; written independently of the converter's rules."""
    clip, _ = random_clip
    config = get_config("vtfpar-b16", clip_weights=None)
    data = load_schema("mars").to_dict()
    phrases = iter(REFERENCE_PHRASES)
    for group in data["groups"]:
        for attribute in group["attributes"]:
            attribute["phrase"] = next(phrases)
    schema = schema_from_dict(data)
    text_embeddings = encode_phrases(clip, ARCH, schema.phrases)
    model = VTFPAR(config, schema, FrozenCLIPTaps(clip.visual, config.taps), text_embeddings)

    def part(prefix, squeeze=False):
        tensors = {k.removeprefix(prefix): v.float() for k, v in reference_state.items() if k.startswith(prefix)}
        return {k: v.flatten(1) if squeeze and v.ndim > 2 else v for k, v in tensors.items()}

    visual = model.backbone.visual
    with torch.no_grad():
        for name in ("class_embedding", "positional_embedding", "conv1.weight", "ln_pre.weight", "ln_pre.bias"):
            visual.get_parameter(name).copy_(reference_state[f"clip_visual_extractor.{name}"])
        for index, block in enumerate(visual.transformer.resblocks):
            block.load_state_dict(part(f"clip_visual_extractor.resblocks.{index}."))
        for side, prefix in ((model.spatial, "spatial_sidenet."), (model.temporal, "crossframe_sidenet.")):
            side.tokens.cls_embed.copy_(reference_state[prefix + "cls_embed"])
            side.tokens.cls_pos_embed.copy_(reference_state[prefix + "cls_pos_embed"])
            side.tokens.pos_embed.copy_(reference_state[prefix + "vit_model.pos_embed"])
            for index, block in enumerate(side.blocks):
                block.load_state_dict(part(f"{prefix}vit_model.blocks.{index}."))
        model.spatial.patch_embed.load_state_dict(part("spatial_sidenet.vit_model.patch_embed."))
        for k, projection in enumerate(model.spatial.tap_projections):
            projection.norm.load_state_dict(part(f"spatial_sidenet.fusion_layers.layer_{k}.input_proj.0."))
            projection.proj.load_state_dict(part(f"spatial_sidenet.fusion_layers.layer_{k}.input_proj.1.", True))
        model.temporal.first_frame_projection.load_state_dict(part("crossframe_sidenet.frist_linear."))
        for k, projection in enumerate(model.temporal.tap_projections):
            projection.norm.load_state_dict(part(f"crossframe_sidenet.fusion_layers.layer_{k}.ln."))
            projection.proj.load_state_dict(part(f"crossframe_sidenet.fusion_layers.layer_{k}.input_proj.", True))
        model.text_projection.load_state_dict(part("word_embed."))
        model.fusion[0].load_state_dict(part("blocks.7."))
        model.fusion_norm.load_state_dict(part("norm."))
        model.heads.weight.copy_(torch.cat([reference_state[f"weight_layer.{i}.weight"] for i in range(len(schema))]))
        model.heads.bias.copy_(torch.cat([reference_state[f"weight_layer.{i}.bias"] for i in range(len(schema))]))
        model.logit_norm.load_state_dict(part("bn."))
    return model.eval()


def test_the_layout_is_the_authors_mars_model():
    # model/reference_checkpoint.json is a verbatim copy of the shared reference data: 517 tensors, 100,834,585
    # values, 43 phrases, as the reference-checkpoint doc counts them.
    assert len(REFERENCE["tensors"]) == 517
    assert sum(math.prod(shape) for shape in REFERENCE["tensors"].values()) == 100_834_585
    assert len(REFERENCE_PHRASES) == len(load_schema("mars")) == 43


@pytest.mark.slow
def test_every_reference_tensor_is_mapped_or_deliberately_ignored(reference_state, loaded, converted):
    mapping = map_tensors(reference_state)
    used = [name for sources in mapping.sources.values() for name in sources]
    assert len(used) == len(set(used)), "a reference tensor feeds two project tensors"
    assert set(used).isdisjoint(mapping.ignored)
    assert set(used) | set(mapping.ignored) == set(REFERENCE["tensors"])
    # The doc's count of reference tensors that are never on the forward path.
    assert len(mapping.ignored) == 67
    assert sum(reference_state[name].numel() for name in mapping.ignored) == 9_944_833

    served = loaded.model.state_dict()
    assert set(mapping.tensors) == set(served) - {"text_embeddings", *FROM_CLIP_WEIGHTS}
    for name, tensor in mapping.tensors.items():
        assert torch.equal(served[name], tensor.to(served[name].dtype)), name
    assert loaded.metadata["provenance"]["ignored_tensors"] == mapping.ignored
    assert "67 ignored" in converted[1]


@pytest.mark.slow
def test_converted_logits_equal_the_directly_assembled_model(loaded, assembled):
    frames = torch.randn(1, 6, 3, 224, 224, generator=torch.Generator().manual_seed(3))  # already preprocessed
    with torch.no_grad():
        served, direct = loaded.model(frames), assembled(frames)
    difference = (served - direct).abs().max().item()
    print(f"max |logit difference| converted vs assembled: {difference:.3g}")
    assert difference <= 1e-6
    assert served.abs().max() > 0.1, "logits this small could hide a mapping error"


@pytest.mark.slow
def test_the_authors_phrases_are_used_and_recorded_in_column_order(loaded):
    schema = loaded.model.schema
    assert schema.phrases == REFERENCE_PHRASES
    # The trap: the heads at columns 1 and 8 read 'bottom skirt' and 'bottom short' (the authors' order) while the
    # columns keep their MARS label meaning, so evaluation on MARS labels still lines up.
    assert (schema.phrases[1], schema.phrases[8]) == ("bottom skirt", "bottom short")
    assert schema.names == load_schema("mars").names
    assert loaded.metadata["text_embeddings"]["phrases"] == REFERENCE_PHRASES
    assert loaded.metadata["provenance"]["phrases"] == REFERENCE_PHRASES


@pytest.mark.slow
def test_the_header_records_where_the_weights_came_from(loaded, converted, reference_file, random_clip):
    metadata = loaded.metadata
    provenance = metadata["provenance"]
    assert provenance["source_file"] == reference_file.name
    assert provenance["source_sha256"] == file_sha256(reference_file)
    assert provenance["epoch"] == EPOCH
    datetime.fromisoformat(provenance["converted_at"])
    assert provenance["dataset"] == "mars"
    assert provenance["preprocessing"] | {"authors": None} == {
        "image_size": 224,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "padding": "right",
        "authors": None,
    }
    assert metadata["config"]["padding"] == "right" == loaded.model.config.padding
    assert provenance["text_tower"]["weights_file_sha256"] == file_sha256(random_clip[1])
    assert provenance["image_tower"]["dtype_in_file"] == ["float16"]
    # The image tower is the file's, embedded and recorded with the digest of the tower as stored.
    assert metadata["backbone"]["embedded"] is True
    assert metadata["backbone"]["tower_sha256"] == tower_fingerprint(loaded.model.backbone.visual)
    # A random file tower is nothing like the random CLIP's: the converter says so.
    assert provenance["image_tower"]["relative_difference_to_clip_weights"] > 0.5
    assert "warning: the file's image tower is not the tower of --clip-weights" in converted[1]


@pytest.mark.slow
def test_evaluate_runs_on_a_converted_checkpoint_with_the_authors_sampling(converted, tmp_path):
    # Seed 5 puts one of the two tracklets in the test split: two passes are two paper-size forward passes.
    data = generate(tmp_path / "walkers", tracklets=2, seed=5, frames_per_tracklet=(8, 8), size=(64, 32))
    report = tmp_path / "metrics.json"
    args = ["--checkpoint", converted[0], "--data", data, "--sampling", "random_subset", "--passes", "2"]
    with contextlib.redirect_stdout(io.StringIO()) as output:
        assert evaluate_main([str(a) for a in args] + ["--batch-size", "2", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert (result["sampling"], result["passes"], result["frames_per_clip"]) == ("random_subset", 2, 6)
    assert result["checkpoint_sha256"] == file_sha256(converted[0])
    assert len(result["per_pass"]) == 2 and result["std"] is not None
    assert "std over passes" in output.getvalue()


# Refusals: each names what is wrong, exits non-zero, and never gets as far as building the model.


@pytest.mark.slow
def test_a_truncated_file_is_refused(reference_file, tmp_path):
    truncated = tmp_path / "truncated.pth"
    with open(reference_file, "rb") as handle:
        truncated.write_bytes(handle.read(reference_file.stat().st_size // 2))
    code, output = run_convert(truncated, "--out", tmp_path / "out.safetensors")
    assert code == 2
    assert "not a readable PyTorch checkpoint (truncated or corrupt?)" in output
    assert not (tmp_path / "out.safetensors").exists()


def test_a_renamed_tensor_is_named_as_unknown_and_missing(tmp_path):
    state = shapes_only_state(REFERENCE["tensors"])
    state["word_embedding.weight"] = state.pop("word_embed.weight")
    torch.save({"epoch": 1, "model_state_dict": state}, tmp_path / "renamed.pth")
    code, output = run_convert(tmp_path / "renamed.pth", "--out", tmp_path / "out.safetensors")
    assert code == 2
    assert "unknown tensors ['word_embedding.weight']" in output
    assert "missing tensors ['word_embed.weight']" in output


def test_a_wrong_shape_is_named(tmp_path):
    layout = {**REFERENCE["tensors"], "spatial_sidenet.vit_model.pos_embed": [1, 197, 240]}
    torch.save({"epoch": 1, "model_state_dict": shapes_only_state(layout)}, tmp_path / "shape.pth")
    code, output = run_convert(tmp_path / "shape.pth", "--out", tmp_path / "out.safetensors")
    assert code == 2
    assert "wrong shapes: spatial_sidenet.vit_model.pos_embed: file [1, 197, 240], expected [1, 196, 240]" in output


@pytest.mark.parametrize(
    ("heads", "dataset", "expected"),
    [
        (36, "mars", "it looks like a 'duke' model (36 attributes): pass --dataset duke"),
        (43, "duke", "it looks like a 'mars' model (43 attributes): pass --dataset mars"),
        (32, "mars", "this project's 'mars-v1' schema, which the authors' VTFPAR++ code does not train"),
        (40, "mars", "no schema here has 40 attributes"),
    ],
)
def test_another_attribute_count_says_which_schema_it_looks_like(tmp_path, heads, dataset, expected):
    torch.save({"epoch": 1, "model_state_dict": shapes_only_state(reference_layout(heads))}, tmp_path / "heads.pth")
    code, output = run_convert(tmp_path / "heads.pth", "--out", tmp_path / "out.safetensors", "--dataset", dataset)
    assert code == 2
    assert f"has {heads} attribute heads" in output
    assert expected in output


def test_a_duke_model_maps_onto_the_duke_schema():
    state = shapes_only_state(reference_layout(36))
    check_attribute_count(state, "duke", Path("duke.pth"))
    check_layout(state, 36, Path("duke.pth"))
    mapping = map_tensors(state)
    assert mapping.tensors["heads.weight"].shape == (36, 240)
    assert mapping.tensors["logit_norm.running_mean"].shape == (36,)
    assert converted_schema("duke") == load_schema("duke")


def test_a_pickle_holding_more_than_tensors_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = shapes_only_state(REFERENCE["tensors"])
    torch.save({"epoch": 1, "model_state_dict": state, "args": Payload()}, tmp_path / "evil.pth")
    code, output = run_convert(tmp_path / "evil.pth", "--out", tmp_path / "out.safetensors")
    assert code == 2
    assert "holds more than tensors" in output and "never unpickles" in output
    assert not marker.exists()


def test_unexpected_wrapper_entries_are_refused(tmp_path):
    state = shapes_only_state(REFERENCE["tensors"])
    torch.save({"epoch": 1, "model_state_dict": state, "optimizer": {"lr": 0.1}}, tmp_path / "extra.pth")
    code, output = run_convert(tmp_path / "extra.pth", "--out", tmp_path / "out.safetensors")
    assert code == 2
    assert "unexpected entries ['optimizer']" in output


def test_a_bare_state_dict_is_read_and_a_module_prefix_dropped(tmp_path):
    state = shapes_only_state(REFERENCE["tensors"])
    torch.save({f"module.{name}": tensor for name, tensor in state.items()}, tmp_path / "bare.pth")
    read, epoch = read_reference(tmp_path / "bare.pth")
    assert set(read) == set(REFERENCE["tensors"]) and epoch is None


@pytest.mark.slow
def test_bad_clip_weights_and_padding_are_refused(tmp_path):
    torch.save({"epoch": 1, "model_state_dict": shapes_only_state(REFERENCE["tensors"])}, tmp_path / "ok.pth")
    out = tmp_path / "out.safetensors"
    code, output = run_convert(tmp_path / "ok.pth", "--out", out, "--clip-weights", tmp_path / "nope" / "clip.pt")
    assert code == 2 and "--clip-weights" in output and "does not exist" in output
    (tmp_path / "clip.safetensors").write_bytes(b"not weights")
    code, output = run_convert(tmp_path / "ok.pth", "--out", out, "--clip-weights", tmp_path / "clip.safetensors")
    assert code == 2 and "--clip-weights: cannot load CLIP" in output
    code, output = run_convert(tmp_path / "ok.pth", "--out", out, "--padding", "diagonal")
    assert code == 2 and "invalid choice: 'diagonal'" in output
    assert not out.exists()


@pytest.mark.slow
def test_the_command_line_refuses_a_missing_file_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "model.convert", str(tmp_path / "epoch30.pth"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert "epoch30.pth does not exist" in result.stderr
    assert "Traceback" not in result.stderr


REAL_CHECKPOINT = os.environ.get("VTFPAR_REFERENCE_CHECKPOINT")
REAL_CLIP_WEIGHTS = os.environ.get("VTFPAR_REFERENCE_CLIP_WEIGHTS")


@pytest.mark.skipif(
    not (REAL_CHECKPOINT and REAL_CLIP_WEIGHTS),
    reason="needs the authors' released checkpoint (Baidu drive or Dropbox, see README) in "
    "$VTFPAR_REFERENCE_CHECKPOINT and OpenAI CLIP ViT-B/16 weights (a local file or local-dir:) in "
    "$VTFPAR_REFERENCE_CLIP_WEIGHTS; neither can be downloaded here",
)
def test_the_released_checkpoint_converts_and_its_tower_is_openai_clip(tmp_path):
    out = tmp_path / "vtfpar-b16-mars.safetensors"
    code, output = run_convert(REAL_CHECKPOINT, "--out", out, "--clip-weights", REAL_CLIP_WEIGHTS)
    assert code == 0, output
    checkpoint = load_checkpoint(out)
    # Frozen during training, so the file's tower is OpenAI's up to fp16 rounding.
    assert checkpoint.metadata["provenance"]["image_tower"]["relative_difference_to_clip_weights"] < 1e-3
    with torch.no_grad():
        logits = checkpoint.model(torch.zeros(1, 6, 3, 224, 224))
    assert logits.shape == (1, 43) and torch.isfinite(logits).all()
