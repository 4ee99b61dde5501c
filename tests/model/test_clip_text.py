"""The opt-in CLIP image embedding and text tower (``clip_image_embedding``): the same forward pass that answers the
attributes yields CLIP's own image embedding, the text tower embeds free text as CLIP does, and both survive a
checkpoint. Off, the tower stays pruned after its last tap and the checkpoint carries no text tower; a checkpoint
made without it is served with it from its CLIP weights file."""

from __future__ import annotations

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from model import CheckpointError, get_config, load_checkpoint, load_schema, save_checkpoint
from model.backbone import build_clip
from model.network import create_model

CONFIG = get_config("tiny", clip_image_embedding=True)


def opted_in_and_raw():
    """The model with the opt-in, and open_clip's CLIP with the same random weights (same seed, built first)."""
    torch.manual_seed(0)
    model = create_model(CONFIG, load_schema("mars")).eval()
    torch.manual_seed(0)
    raw = build_clip(CONFIG.clip_arch, None).eval()
    return model, raw


def test_the_image_embedding_is_clips_own_from_the_same_pass():
    model, raw = opted_in_and_raw()
    frames = torch.randn(2, CONFIG.frames, 3, CONFIG.image_size, CONFIG.image_size)
    logits, appearance, image = model.forward_with_embeddings(frames)
    with torch.no_grad():
        per_frame = raw.encode_image(frames.flatten(0, 1), normalize=True).view(2, CONFIG.frames, -1)
        expected = F.normalize(per_frame.mean(dim=1), dim=-1)
        assert torch.allclose(image, expected, atol=1e-5)
        assert torch.equal(logits, model(frames))  # the attributes are those of a plain forward pass
    assert appearance.shape == (2, model.appearance_width)


def test_the_text_tower_embeds_as_clip_does():
    model, raw = opted_in_and_raw()
    texts = ["umbrella", "a red umbrella"]
    tokens = open_clip.get_tokenizer(CONFIG.clip_arch)(texts)
    with torch.no_grad():
        expected = raw.encode_text(tokens, normalize=True)
    assert torch.allclose(model.encode_text(texts), expected, atol=1e-6)
    assert model.text_tower is not None
    assert model.text_tower.logit_scale == raw.logit_scale.exp().item()


def test_both_survive_a_checkpoint(tmp_path):
    model, _ = opted_in_and_raw()
    path = tmp_path / "opted-in.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path).model
    frames = torch.randn(1, CONFIG.frames, 3, CONFIG.image_size, CONFIG.image_size)
    assert torch.allclose(loaded.forward_with_embeddings(frames)[2], model.forward_with_embeddings(frames)[2])
    assert torch.allclose(loaded.encode_text(["umbrella"]), model.encode_text(["umbrella"]), atol=1e-6)


def test_off_the_tower_stays_pruned_and_no_text_tower_is_kept(tmp_path):
    torch.manual_seed(0)
    model = create_model(get_config("tiny"), load_schema("mars")).eval()
    assert len(model.backbone.visual.transformer.resblocks) == model.config.taps[-1]
    frames = torch.randn(1, model.config.frames, 3, 32, 32)
    assert model.forward_with_embeddings(frames)[2] is None and model.text_tower is None
    path = tmp_path / "plain.safetensors"
    save_checkpoint(model, path)
    assert load_checkpoint(path).model.text_tower is None


def test_a_checkpoint_made_without_it_is_served_with_it_from_its_weights_file(tmp_path):
    """VTFPAR_CLIP_TEXT: the blocks after the last tap and the text tower come from the recorded weights file."""
    torch.manual_seed(1)
    raw = build_clip(CONFIG.clip_arch, None).eval()
    weights = tmp_path / "clip.safetensors"
    save_file(raw.state_dict(), str(weights))
    model = create_model(get_config("tiny", clip_weights=str(weights)), load_schema("mars")).eval()
    path = tmp_path / "external.safetensors"
    save_checkpoint(model, path)
    served = load_checkpoint(path, clip_image_embedding=True).model
    frames = torch.randn(1, served.config.frames, 3, CONFIG.image_size, CONFIG.image_size)
    logits, _, image = served.forward_with_embeddings(frames)
    with torch.no_grad():
        assert torch.equal(logits, model(frames))  # the same attributes as served without it
        per_frame = raw.encode_image(frames.flatten(0, 1), normalize=True)
        assert torch.allclose(image, F.normalize(per_frame.mean(dim=0, keepdim=True), dim=-1), atol=1e-5)
        expected = raw.encode_text(open_clip.get_tokenizer(CONFIG.clip_arch)(["umbrella"]), normalize=True)
    assert torch.allclose(served.encode_text(["umbrella"]), expected, atol=1e-6)


def test_an_embedded_pruned_tower_cannot_be_served_with_it(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "plain.safetensors"
    save_checkpoint(create_model(get_config("tiny"), load_schema("mars")), path)
    with pytest.raises(CheckpointError, match="embeds its CLIP tower cut after the last tap"):
        load_checkpoint(path, clip_image_embedding=True)
