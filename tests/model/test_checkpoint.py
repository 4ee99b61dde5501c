import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import CheckpointError, create_model, get_config, load_checkpoint, load_schema, save_checkpoint
from model.backbone import build_clip


def _rewrite(src, dst, edit_tensors=None, edit_metadata=None):
    with safe_open(str(src), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = json.loads(handle.metadata()["vtfpar"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_metadata:
        edit_metadata(metadata)
    save_file(tensors, str(dst), metadata={"vtfpar": json.dumps(metadata)})
    return dst


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    tiny_model.thresholds = [0.45] * 42 + [0.6]
    digest = save_checkpoint(tiny_model, path, provenance={"dataset": "unit-test"})
    return path, digest


def test_round_trip_gives_bit_identical_logits(saved, tiny_model, clips):
    path, digest = saved
    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded.model(clips), tiny_model(clips))
    assert loaded.digest == digest
    assert loaded.model.thresholds[-1] == 0.6
    assert loaded.model.schema == tiny_model.schema
    assert loaded.metadata["provenance"] == {"dataset": "unit-test"}
    assert loaded.metadata["backbone"]["embedded"] is True
    assert loaded.metadata["text_embeddings"]["phrases"] == tiny_model.schema.phrases


def test_checkpoint_is_readable_by_other_users(saved):
    assert saved[0].stat().st_mode & 0o044 == 0o044


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(saved, tmp_path):
    data = saved[0].read_bytes()
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(broken)


def test_a_pickle_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_bad_format_version(saved, tmp_path):
    bad = _rewrite(saved[0], tmp_path / "v99.safetensors", edit_metadata=lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(bad)


def test_wrong_tensor_shape_is_named(saved, tmp_path):
    def shrink(tensors):
        tensors["text_projection.weight"] = tensors["text_projection.weight"][:, :-1].contiguous()

    bad = _rewrite(saved[0], tmp_path / "shape.safetensors", edit_tensors=shrink)
    with pytest.raises(CheckpointError, match=r"text_projection\.weight"):
        load_checkpoint(bad)


def test_schema_and_weights_must_agree(saved, tmp_path):
    def drop_attribute(metadata):
        metadata["schema"]["groups"] = metadata["schema"]["groups"][1:]
        metadata["thresholds"] = metadata["thresholds"][1:]

    bad = _rewrite(saved[0], tmp_path / "schema.safetensors", edit_metadata=drop_attribute)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_external_backbone_is_checked_against_its_recorded_identity(tmp_path, clips):
    arch = get_config("tiny").clip_arch
    torch.manual_seed(1)
    right = tmp_path / "clip-right.safetensors"
    save_file(build_clip(arch, None).state_dict(), str(right))
    torch.manual_seed(2)
    wrong = tmp_path / "clip-wrong.safetensors"
    save_file(build_clip(arch, None).state_dict(), str(wrong))

    model = create_model(get_config("tiny", clip_weights=str(right)), load_schema("mars")).eval()
    path = tmp_path / "external.safetensors"
    save_checkpoint(model, path)
    with safe_open(str(path), framework="pt") as handle:
        assert not any(k.startswith("backbone.") for k in handle.keys()), "a public backbone is not embedded"

    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded.model(clips), model(clips))
    with pytest.raises(CheckpointError, match="backbone mismatch"):
        load_checkpoint(path, backbone_weights=str(wrong))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(path, backbone_weights=str(tmp_path / "missing.safetensors"))


def test_an_altered_embedded_backbone_is_refused(saved, tmp_path):
    def add_noise(tensors):
        weight = tensors["backbone.visual.conv1.weight"]
        tensors["backbone.visual.conv1.weight"] = weight + 0.01 * torch.randn_like(weight)

    altered = _rewrite(saved[0], tmp_path / "altered.safetensors", edit_tensors=add_noise)
    with pytest.raises(CheckpointError, match="backbone mismatch: its embedded vtfpar-tiny-clip tower"):
        load_checkpoint(altered)


def test_metadata_weights_and_version_come_from_one_read(saved, tmp_path, monkeypatch, clips):
    """A trainer may replace the file while a server loads it: what is loaded is one file, all of it."""
    import model.checkpoint as checkpoint

    path, digest = saved
    loading = tmp_path / "best.safetensors"
    loading.write_bytes(path.read_bytes())
    other = create_model(get_config("tiny"), load_schema("mars"))
    build_backbone = checkpoint.build_backbone

    def replace_file_meanwhile(*args):
        save_checkpoint(other, loading, provenance={"dataset": "the newer run"})
        return build_backbone(*args)

    monkeypatch.setattr(checkpoint, "build_backbone", replace_file_meanwhile)
    loaded = load_checkpoint(loading)
    assert loaded.digest == digest
    assert loaded.metadata["provenance"] == {"dataset": "unit-test"}
    with torch.no_grad():
        assert torch.equal(loaded.model(clips), load_checkpoint(path).model(clips))
