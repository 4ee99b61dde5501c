"""The two trainable side networks that read the frozen CLIP taps (docs/method.md §1.3-1.4).

Both are built from timm ViT blocks (the reference uses a 240-wide timm ViT); only the parts the reference
actually runs are built here.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, init_weights_vit_timm
from torch import nn


def side_block(width: int, heads: int, mlp_ratio: float, drop_path: float = 0.0) -> Block:
    """A timm ViT block with the ViT defaults the reference side nets use (qkv bias, LayerNorm eps 1e-6)."""
    block = Block(
        dim=width,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        drop_path=drop_path,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),  # type: ignore[arg-type]  # timm annotates a class; a partial works
    )
    for module in block.modules():
        init_weights_vit_timm(module)
    return block


class TapProjection(nn.Module):
    """LayerNorm over CLIP channels, then a 768->240 projection, added to the side tokens.

    The reference writes this as a channel LayerNorm + 1x1 Conv2d on 14x14 maps (spatial, eps 1e-6) or a
    LayerNorm + Conv1d(k=1) on tokens (temporal, eps 1e-5); on tokens both are exactly LayerNorm + Linear.
    """

    def __init__(self, in_width: int, out_width: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(in_width, eps=eps)
        self.proj = nn.Linear(in_width, out_width)
        nn.init.kaiming_uniform_(self.proj.weight, a=1)  # detectron2's c2_xavier_fill, as the reference
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens))


def _add_to_patches(x: torch.Tensor, patch_update: torch.Tensor) -> torch.Tensor:
    """Add ``patch_update`` to every token but the leading CLS token."""
    return torch.cat([x[:, :1], x[:, 1:] + patch_update], dim=1)


class _SideTokens(nn.Module):
    """CLS embedding and positional embeddings shared by both side nets (timm's cls/pos, with CLS split off)."""

    def __init__(self, width: int, num_patches: int):
        super().__init__()
        self.cls_embed = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, width))
        nn.init.normal_(self.cls_embed, std=0.02)
        nn.init.normal_(self.cls_pos_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def positions(self) -> torch.Tensor:
        return torch.cat([self.cls_pos_embed, self.pos_embed], dim=1)

    def prepend_cls(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls_embed.expand(patches.shape[0], -1, -1), patches], dim=1)


class SpatialSideNet(nn.Module):
    """Per-frame side ViT on the pixels, with tap j added to its patch tokens before block j+1.

    As in the reference: positional embeddings are re-added after every block but the last, and the output is
    the last block's tokens ``[N, 1 + L, width]``.
    """

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        width: int,
        heads: int,
        mlp_ratio: float,
        depth: int,
        clip_width: int,
        num_taps: int,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size=image_size, patch_size=patch_size, in_chans=3, embed_dim=width)
        init_weights_vit_timm(self.patch_embed.proj)
        self.tokens = _SideTokens(width, self.patch_embed.num_patches)
        self.blocks = nn.ModuleList(side_block(width, heads, mlp_ratio) for _ in range(depth))
        self.tap_projections = nn.ModuleList(TapProjection(clip_width, width, eps=1e-6) for _ in range(num_taps))

    def forward(self, images: torch.Tensor, taps: list[torch.Tensor]) -> torch.Tensor:
        positions = self.tokens.positions()
        x = self.tokens.prepend_cls(self.patch_embed(images)) + positions
        x = _add_to_patches(x, self.tap_projections[0](taps[0]))
        last = len(self.blocks)
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index == last:
                break
            if index < len(taps):
                x = _add_to_patches(x, self.tap_projections[index](taps[index]))
            x = x + positions
        return x


class TemporalSideNet(nn.Module):
    """A chain over frames, run once per tapped CLIP layer ("stream") with weights shared across streams.

    Side block f is dedicated to frame f, so the net takes at most ``depth`` frames. Frame 0 enters through a
    Linear; each later frame f is added (LayerNorm + projection of its tap) after block f. The streams are
    averaged at the end. It never sees pixels.
    """

    def __init__(
        self, *, width: int, heads: int, mlp_ratio: float, depth: int, clip_width: int, num_patches: int, num_taps: int
    ):
        super().__init__()
        self.first_frame_projection = nn.Linear(clip_width, width)
        self.tokens = _SideTokens(width, num_patches)
        self.blocks = nn.ModuleList(side_block(width, heads, mlp_ratio) for _ in range(depth))
        self.tap_projections = nn.ModuleList(TapProjection(clip_width, width, eps=1e-5) for _ in range(num_taps))

    @property
    def max_frames(self) -> int:
        return len(self.blocks)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """``taps``: one ``[B, T, L, C]`` tensor per stream -> ``[B, 1 + L, width]``."""
        batch, frames = taps[0].shape[:2]
        if frames > self.max_frames:
            raise ValueError(
                f"the temporal side net has {self.max_frames} blocks, one per frame, "
                f"so it takes at most {self.max_frames} frames; got {frames}"
            )
        streams = len(taps)
        # All streams share the blocks, so they run as one batch of streams * B sequences.
        first = torch.cat([tap[:, 0] for tap in taps])
        x = self.tokens.prepend_cls(self.first_frame_projection(first)) + self.tokens.positions()
        x = self.blocks[0](x)
        for frame in range(1, frames):
            x = self.blocks[frame](x)
            update = torch.cat([proj(tap[:, frame]) for proj, tap in zip(self.tap_projections, taps, strict=True)])
            x = _add_to_patches(x, update)
        return x.view(streams, batch, *x.shape[1:]).mean(dim=0)
