"""The frozen CLIP image tower, tapped at several layers, and the one-off text-tower pass.

Weights sources (``clip_weights``):
- ``None``: random init (tests, offline summaries, or a small backbone whose weights a checkpoint embeds);
- an open_clip pretrained tag such as ``openai`` (downloaded to the open_clip / Hugging Face cache);
- a local weights file (``.safetensors``, ``.pt``, ``.bin``) holding a full open_clip CLIP state dict;
- ``local-dir:/path`` with ``open_clip_config.json`` + ``open_clip_model.safetensors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import TypeAlias

import open_clip
import torch
from open_clip.transformer import VisionTransformer
from safetensors import SafetensorError
from torch import nn
from torch.nn import functional as F

from .config import CLIP_CONFIG_DIR
from .precision import TORCH_DTYPES

# Project-local open_clip architectures (the tiny test tower) are registered like open_clip's own configs.
open_clip.add_model_config(CLIP_CONFIG_DIR)

# What open_clip.create_model builds. open_clip ships no type information, so to mypy these names are Any: they
# say what the code expects (attribute access on a plain nn.Module would not type-check).
ClipModel: TypeAlias = open_clip.CLIP | open_clip.CustomTextCLIP | open_clip.CoCa


class BackboneError(ValueError):
    """A CLIP architecture or weights source that cannot be loaded."""


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def tower_fingerprint(module: nn.Module, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over a tower's weights (names and fp32 values), those whose names start with ``exclude`` left out:
    the same weights give the same digest whatever file, tag or folder they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name.startswith(exclude):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def backbone_source(arch: str, weights: str | None) -> dict:
    """Where a backbone's weights come from, as a checkpoint records it (with the tower's digest, added by the
    caller), so a loader can refuse different weights."""
    identity = {"arch": arch, "weights": weights, "weights_file_sha256": None}
    if weights and not weights.startswith("local-dir:") and os.path.isfile(weights):
        identity["weights_file_sha256"] = file_sha256(weights)
    elif weights and weights.startswith("local-dir:"):
        folder = Path(weights.removeprefix("local-dir:"))
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
        if files:
            identity["weights_file_sha256"] = file_sha256(files[0])
    return identity


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _intended_random_init():
    """open_clip warns on the root logger when a model starts random; with ``weights=None`` that is the intent
    (tests, summaries, or a tower whose weights a checkpoint embeds and loads next), so the warning would mislead."""
    log_filter = _DropRandomInitWarning()
    logging.getLogger().addFilter(log_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(log_filter)


def build_clip(arch: str, weights: str | None, force_quick_gelu: bool = False) -> ClipModel:
    """Create the whole open_clip CLIP model (both towers) from an architecture and a weights source."""
    kwargs = {"pretrained_text": False, "force_quick_gelu": force_quick_gelu}
    try:
        if weights is None:
            with _intended_random_init():
                return open_clip.create_model(arch, pretrained=None, **kwargs)
        if weights.startswith("local-dir:"):
            return open_clip.create_model(weights, **kwargs)
        if ("/" in weights or os.sep in weights) and not os.path.isfile(weights):
            raise BackboneError(f"CLIP weights file {weights!r} does not exist")
        return open_clip.create_model(arch, pretrained=weights, **kwargs)
    except BackboneError:
        raise
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "not found" in str(exc).lower():
            raise BackboneError(f"cannot build CLIP {arch!r} with weights {weights!r}: {exc}") from None
        raise BackboneError(f"cannot load CLIP {arch!r} weights {weights!r}: {exc}") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:  # corrupt weights files
        raise BackboneError(f"cannot load CLIP {arch!r} weights {weights!r}: {exc}") from None


@torch.no_grad()
def encode_phrases(clip_model: ClipModel, arch: str, phrases: list[str]) -> torch.Tensor:
    """The projected, unnormalised EOT embedding of each phrase: ``[A, embed_dim]`` in fp32."""
    tokenizer = open_clip.get_tokenizer(arch)
    was_training = clip_model.training
    clip_model.eval()
    tokens = tokenizer(phrases).to(next(clip_model.parameters()).device)
    embeddings = clip_model.encode_text(tokens, normalize=False).float()
    clip_model.train(was_training)
    return embeddings


class SdpaSelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (same parameters, same state dict) whose self-attention always runs through
    ``scaled_dot_product_attention``.

    open_clip's blocks call ``nn.MultiheadAttention``, whose inference fast path (eval, no grad, no autocast: the
    service on CPU) is a fused op that computes softmax(QK^T)V with bmm and softmax on CPU, and which torch.compile
    keeps as one opaque call; outside that path it already calls SDPA. Routing every case through SDPA gives the
    flash kernels on CPU and CUDA, eager and compiled. Anything else (weights asked for, a mask, cross-attention)
    goes to the parent unchanged.
    """

    @classmethod
    def replacing(cls, attention: nn.MultiheadAttention) -> SdpaSelfAttention:
        if not (attention.batch_first and attention._qkv_same_embed_dim and attention.bias_k is None):
            raise BackboneError("expected open_clip's batch-first self-attention with one packed qkv projection")
        weight = attention.in_proj_weight
        replacement = cls(
            attention.embed_dim,
            attention.num_heads,
            dropout=attention.dropout,
            bias=attention.in_proj_bias is not None,
            batch_first=True,
            device=weight.device,
            dtype=weight.dtype,
        )
        replacement.load_state_dict(attention.state_dict())
        return replacement

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        plain = query is key and key is value and key_padding_mask is None and attn_mask is None and not is_causal
        if need_weights or not plain:
            return super().forward(
                query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
            )
        batch, length, width = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias).view(batch, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, width)), None


class FrozenCLIPTaps(nn.Module):
    """CLIP's image tower, frozen, returning patch tokens at chosen layers.

    Tap 0 is the token sequence right after ``ln_pre``; tap k is the output of block k (1-based). CLS tokens are
    dropped. Blocks after the last tap are deleted, so they cost neither memory nor time, unless ``image_embedding``
    keeps them (with ``ln_post`` and ``proj``) for CLIP's own image embedding (``forward_with_image``). open_clip's
    ``forward_intermediates`` does not expose the post-``ln_pre`` tokens, hence this short walk over the tower.
    """

    def __init__(
        self, visual: VisionTransformer, taps: tuple[int, ...], dtype: str = "fp32", image_embedding: bool = False
    ):
        super().__init__()
        num_blocks = len(visual.transformer.resblocks)
        if taps[-1] > num_blocks:
            raise BackboneError(f"tap {taps[-1]} asked for, but the CLIP tower has only {num_blocks} blocks")
        if getattr(visual, "attn_pool", None) is not None:
            raise BackboneError("CLIP towers with attention pooling are not supported")
        if not visual.transformer.batch_first:
            raise BackboneError("expected an open_clip tower with batch-first blocks (open_clip >= 2.x)")
        if image_embedding and visual.proj is None:
            raise BackboneError("clip_image_embedding needs a CLIP tower with an image projection (proj)")
        if not image_embedding:
            del visual.transformer.resblocks[taps[-1] :]
        self.image_embedding = image_embedding
        for block in visual.transformer.resblocks:
            block.attn = SdpaSelfAttention.replacing(block.attn)
        self.visual = visual
        self.taps = tuple(taps)
        self.width: int = visual.transformer.width
        self.grid = tuple(visual.grid_size)
        self.image_size = tuple(visual.image_size)
        self.dtype = TORCH_DTYPES[dtype]
        self.visual.to(self.dtype)
        # Of the tower as it runs (after the cast), which is also what a checkpoint embeds: a loader checks that
        # it got exactly these weights.
        self.fingerprint = self.digest()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenCLIPTaps:
        # Frozen: dropout and patch dropout stay off whatever the parent module's mode.
        return super().train(False)

    def digest(self) -> str:
        """``tower_fingerprint`` of the tower up to its last tap (with ``ln_post`` and ``proj``, which the pruned
        tower keeps too): the same whether the blocks after it are kept (``image_embedding``) or not, so that a
        checkpoint made without them can be served with them from the same weights source."""
        beyond = range(self.taps[-1], len(self.visual.transformer.resblocks))
        return tower_fingerprint(self.visual, tuple(f"transformer.resblocks.{index}." for index in beyond))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images [N, 3, S, S]`` -> one ``[N, grid*grid, width]`` fp32 tensor per tap."""
        return self.forward_with_image(images, image=False)[0]

    @torch.no_grad()
    def forward_with_image(
        self, images: torch.Tensor, image: bool = True
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The taps and, with ``image`` on a tower kept whole, CLIP's projected image embedding ``[N, embed_dim]``
        (fp32, not normalised: what ``CLIP.encode_image`` returns) from the same pass."""
        image = image and self.image_embedding
        x = self.visual._embeds(images.to(self.dtype))
        taps = [x] if self.taps[0] == 0 else []
        for index, block in enumerate(self.visual.transformer.resblocks, start=1):
            if index > self.taps[-1] and not image:
                break
            x = block(x)
            if index in self.taps:
                taps.append(x)
        embedded = None
        if image:
            pooled, _ = self.visual._pool(x)
            embedded = (pooled @ self.visual.proj).float()
        return [tap[:, 1:].float() for tap in taps], embedded


class ClipTextTower(nn.Module):
    """CLIP's text tower, frozen, kept at serving to embed free text (the image tower taken out: it lives in
    :class:`FrozenCLIPTaps`). ``tokenizer``: what ``open_clip.get_tokenizer`` takes (an architecture, or
    ``local-dir:`` weights that bring their own)."""

    def __init__(self, clip_model: ClipModel, tokenizer: str):
        super().__init__()
        clip_model.visual = None
        self.clip = clip_model
        self.tokenizer = open_clip.get_tokenizer(tokenizer)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ClipTextTower:
        return super().train(False)

    @property
    def logit_scale(self) -> float:
        """CLIP's learnt temperature (``exp(logit_scale)``: 100 for OpenAI's weights) that scales cosines."""
        return float(self.clip.logit_scale.detach().exp())

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        """``texts`` -> their unit-length embeddings ``[N, embed_dim]`` in fp32."""
        tokens = self.tokenizer(texts).to(next(self.clip.parameters()).device)
        return self.clip.encode_text(tokens, normalize=True).float()
