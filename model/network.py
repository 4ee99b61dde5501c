"""VTFPAR++: frozen CLIP taps -> spatial + temporal side nets -> text/visual fusion -> one logit per attribute.

Shapes follow docs/method.md §1.1 (B clips of T frames, L patches, width W, A attributes):
frames [B,T,3,S,S] -> taps [B*T,L,C] -> spatial [B,1+L,W] (mean over frames) + temporal [B,1+L,W] (mean over
tapped layers) -> concat(text [B,A,W], visual) -> fusion block(s) + LayerNorm -> head i on text token i -> BN.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ClipModel, ClipTextTower, FrozenCLIPTaps, build_clip, encode_phrases
from .config import ConfigError, VTFPARConfig
from .preprocess import Preprocess
from .schema import AttributeSchema
from .side_networks import SpatialSideNet, TemporalSideNet, side_block


class AttributeHeads(nn.Module):
    """A separate ``Linear(W, 1)`` per attribute, reading that attribute's text token.

    Stored as one ``[A, W]`` weight so all heads run as a single batched product; the parameters are exactly
    those of A independent Linear layers.
    """

    def __init__(self, num_attributes: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_attributes, width))
        self.bias = nn.Parameter(torch.zeros(num_attributes))
        bound = width**-0.5  # nn.Linear's default init, per head
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, text_tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("baw,aw->ba", text_tokens, self.weight) + self.bias


# The appearance embedding's shape (``VTFPAR._appearance``; chosen by measurement, docs/search.md "The embedding").
APPEARANCE_MAX_WIDTH = 512  # floats: keeps a million tracks' index within 2 GB
APPEARANCE_MAX_STRIPES = 4
LOGITS_SHARE = 0.5  # the standardised logits weigh half a stripe (chosen on a split apart from the reported one)


def stripe_bounds(rows: int, count: int) -> list[tuple[int, int]]:
    """``count`` horizontal stripes of a ``rows``-high patch grid, as adaptive average pooling cuts them (fixed
    slices rather than the pooling op, so that the ONNX export needs no adaptive pooling)."""
    return [(i * rows // count, -(-(i + 1) * rows // count)) for i in range(count)]


class VTFPAR(nn.Module):
    text_embeddings: torch.Tensor  # a buffer (see __init__), declared for the type checker

    def __init__(
        self,
        config: VTFPARConfig,
        schema: AttributeSchema,
        backbone: FrozenCLIPTaps,
        text_embeddings: torch.Tensor,
        text_tower: ClipTextTower | None = None,
    ):
        super().__init__()
        if config.clip_image_embedding != (text_tower is not None) or backbone.image_embedding != (
            text_tower is not None
        ):
            raise ConfigError(f"{config.name}: clip_image_embedding needs the whole image tower and the text tower")
        if tuple(backbone.image_size) != (config.image_size, config.image_size):
            raise ConfigError(
                f"{config.name}: image_size {config.image_size} differs from the CLIP tower's "
                f"input size {backbone.image_size}"
            )
        side_grid = config.image_size // config.side_patch_size
        if backbone.grid != (side_grid, side_grid):
            raise ConfigError(
                f"{config.name}: the side nets' {side_grid}x{side_grid} patch grid must equal the "
                f"CLIP grid {backbone.grid}; set side_patch_size to the CLIP patch size"
            )
        if text_embeddings.shape[0] != len(schema):
            raise ConfigError(f"{text_embeddings.shape[0]} text embeddings for {len(schema)} attributes")
        self.config = config
        self.schema = schema
        self.preprocess = Preprocess.from_config(config)
        # The decision parameters (model/decisions.py); a calibrated checkpoint replaces them when it is loaded.
        self.thresholds = [config.threshold] * len(schema)
        self.temperatures: list[float] | None = None
        self.calibration: dict | None = None  # what thresholds and temperatures were fit on
        width, num_patches = config.side_width, side_grid * side_grid
        self.backbone = backbone
        self.spatial = SpatialSideNet(
            image_size=config.image_size,
            patch_size=config.side_patch_size,
            width=width,
            heads=config.side_heads,
            mlp_ratio=config.side_mlp_ratio,
            depth=config.spatial_depth,
            clip_width=backbone.width,
            num_taps=len(config.taps),
        )
        self.temporal = TemporalSideNet(
            width=width,
            heads=config.side_heads,
            mlp_ratio=config.side_mlp_ratio,
            depth=config.frames,
            clip_width=backbone.width,
            num_patches=num_patches,
            num_taps=len(config.taps),
        )
        # The frozen text tower ran once, at creation; its output is all the network needs of it.
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone())
        self.text_projection = nn.Linear(text_embeddings.shape[1], width)
        self.fusion = nn.Sequential(
            *(
                side_block(width, config.side_heads, config.side_mlp_ratio, drop_path=config.fusion_drop_path)
                for _ in range(config.fusion_depth)
            )
        )
        self.fusion_norm = nn.LayerNorm(width, eps=1e-6)
        self.heads = AttributeHeads(len(schema), width)
        self.logit_norm = nn.BatchNorm1d(len(schema))
        # Free-text search (config.clip_image_embedding): the frozen text tower, kept for queries at serving.
        self.text_tower = text_tower
        stripes = min(APPEARANCE_MAX_STRIPES, side_grid, (APPEARANCE_MAX_WIDTH - len(schema)) // width)
        self.appearance_stripes = stripe_bounds(side_grid, max(1, stripes))
        self.appearance_width = len(self.appearance_stripes) * width + len(schema)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, 3, S, S]`` -> visual tokens ``[B, 1 + L, W]`` (spatial + temporal side outputs)."""
        return self._features(frames, image=False)[0]

    def _features(self, frames: torch.Tensor, image: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The visual tokens and, with ``image`` on a model with ``clip_image_embedding``, the clips' CLIP image
        embeddings ``[B, E]``: the frames' unit embeddings averaged, unit length (the mean direction)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames [B, T, 3, H, W], got {tuple(frames.shape)}")
        batch, num_frames = frames.shape[:2]
        if num_frames > self.config.frames:
            raise ValueError(
                f"{num_frames} frames per clip, but this model's temporal side net has one block per "
                f"frame and takes at most {self.config.frames}"
            )
        images = frames.flatten(0, 1)
        taps, embedded = self.backbone.forward_with_image(images, image)
        spatial = self.spatial(images, taps)
        spatial = spatial.view(batch, num_frames, *spatial.shape[1:]).mean(dim=1)
        temporal = self.temporal([tap.view(batch, num_frames, *tap.shape[1:]) for tap in taps])
        if embedded is not None:
            per_frame = nn.functional.normalize(embedded, dim=-1).view(batch, num_frames, -1)
            embedded = nn.functional.normalize(per_frame.mean(dim=1), dim=-1)
        return spatial + temporal, embedded

    def _fused(self, visual_tokens: torch.Tensor) -> torch.Tensor:
        """The fusion block's output ``[B, A + 1 + L, W]``: attribute text tokens first, then the visual tokens.

        Runs in fp32 whatever autocast is active: the logit BatchNorm multiplies logits by up to ~160 in trained
        models, so bf16 rounding here moves probabilities by 0.1 and flips decisions, and this part costs under
        1 % of the forward pass.
        """
        with torch.autocast(visual_tokens.device.type, enabled=False):
            visual_tokens = visual_tokens.float()
            text = self.text_projection(self.text_embeddings).expand(visual_tokens.shape[0], -1, -1)
            return self.fusion_norm(self.fusion(torch.cat([text, visual_tokens], dim=1)))

    def _logits(self, fused: torch.Tensor) -> torch.Tensor:
        with torch.autocast(fused.device.type, enabled=False):
            return self.logit_norm(self.heads(fused[:, : len(self.schema)]))

    def _appearance(self, fused: torch.Tensor) -> torch.Tensor:
        """The appearance embedding ``[B, appearance_width]``, unit length: the fused visual patch tokens' means over
        horizontal stripes of the grid (up to 4, as many as keep it within 512 floats), each unit length, beside the
        standardised attribute logits (the logit BatchNorm's normalised values, before its affine) at half a
        stripe's weight. Chosen by re-ID rank-1/mAP on synthetic identities over the fused and unfused tokens'
        means, CLS tokens, attribute tokens, logits and their mixes (``training.reid_candidates``; docs/search.md,
        "The embedding"): stripes keep where a colour is (top or bottom), the logits add what the heads learnt."""
        attributes = len(self.schema)
        with torch.autocast(fused.device.type, enabled=False):
            rows, columns = self.backbone.grid
            patches = fused[:, attributes + 1 :].unflatten(1, (rows, columns)).mean(dim=2)  # [B, rows, W]
            stripes = torch.stack([patches[:, top:bottom].mean(dim=1) for top, bottom in self.appearance_stripes], 1)
            norm = self.logit_norm
            assert norm.running_mean is not None and norm.running_var is not None  # tracked: see __init__
            standard = (self.heads(fused[:, :attributes]) - norm.running_mean) / (norm.running_var + norm.eps).sqrt()
            parts = [nn.functional.normalize(stripes, dim=-1).flatten(1)]
            parts.append(LOGITS_SHARE * nn.functional.normalize(standard, dim=-1))
            return nn.functional.normalize(torch.cat(parts, dim=1), dim=-1)

    def forward_head(self, visual_tokens: torch.Tensor) -> torch.Tensor:
        """Fuse the attribute text tokens with the visual tokens and read one logit per attribute."""
        return self._logits(self._fused(visual_tokens))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, 3, S, S]`` (preprocessed) -> logits ``[B, A]`` (no sigmoid)."""
        return self.forward_head(self.forward_features(frames))

    def forward_with_embedding(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames`` -> (logits ``[B, A]``, appearance embeddings ``[B, W]``) from the same forward pass."""
        fused = self._fused(self.forward_features(frames))
        return self._logits(fused), self._appearance(fused)

    def forward_with_embeddings(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``frames`` -> (logits, appearance embeddings, CLIP image embeddings ``[B, E]`` or None without
        ``clip_image_embedding``) from one forward pass."""
        tokens, image = self._features(frames, image=True)
        fused = self._fused(tokens)
        return self._logits(fused), self._appearance(fused), image

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Free text -> unit CLIP text embeddings ``[N, E]``, comparable with the CLIP image embeddings."""
        if self.text_tower is None:
            raise ValueError(f"{self.config.name} keeps no CLIP text tower (clip_image_embedding is off)")
        return self.text_tower(texts)


def build_backbone(config: VTFPARConfig, weights: str | None) -> tuple[ClipModel, FrozenCLIPTaps]:
    """The whole CLIP model (for its text tower) and the frozen image-tower taps (pruned after the last tap unless
    ``clip_image_embedding``)."""
    clip = build_clip(config.clip_arch, weights, config.clip_force_quick_gelu)
    return clip, FrozenCLIPTaps(clip.visual, config.taps, config.backbone_dtype, config.clip_image_embedding)


def text_tower(clip: ClipModel, config: VTFPARConfig, weights: str | None) -> ClipTextTower | None:
    """The text tower a model with ``clip_image_embedding`` keeps (taking it out of ``clip``); None without."""
    if not config.clip_image_embedding:
        return None
    return ClipTextTower(clip, weights if weights and weights.startswith("local-dir:") else config.clip_arch)


def phrase_embeddings(clip: ClipModel, config: VTFPARConfig, weights: str | None, phrases: list[str]) -> torch.Tensor:
    """The text tower's embeddings of ``phrases``; CLIP weights from a ``local-dir:`` folder bring their tokenizer."""
    tokenizer = weights if weights and weights.startswith("local-dir:") else config.clip_arch
    return encode_phrases(clip, tokenizer, phrases)


def create_model(config: VTFPARConfig, schema: AttributeSchema, device: str | torch.device = "cpu") -> VTFPAR:
    """A fresh VTFPAR++ (random side nets) on a frozen CLIP tower; the text tower runs once, here."""
    clip, backbone = build_backbone(config, config.clip_weights)
    text_embeddings = phrase_embeddings(clip, config, config.clip_weights, schema.phrases)
    model = VTFPAR(config, schema, backbone, text_embeddings, text_tower(clip, config, config.clip_weights))
    return model.to(device)
