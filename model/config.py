"""Model configuration and the preset registry.

A preset is a JSON file in ``model/presets/`` holding every field of :class:`VTFPARConfig`; variants are
data, and any field can be overridden by name (``get_config("vtfpar-b16", frames=8)``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .precision import PRECISIONS

PRESET_DIR = Path(__file__).parent / "presets"
CLIP_CONFIG_DIR = Path(__file__).parent / "clip_configs"
# How a frame becomes a square before resizing: centred on black (this project's training), placed at the
# top left with black to the right/bottom (the authors' "pad_right" data), or stretched without padding.
PADDING_MODES = ("centre", "right", "stretch")


class ConfigError(ValueError):
    """A preset or override that cannot build a model."""


@dataclass(frozen=True)
class VTFPARConfig:
    name: str
    # Frozen CLIP image tower: an open_clip architecture name and a weights source (see backbone.py).
    clip_arch: str
    clip_weights: str | None
    clip_force_quick_gelu: bool = False
    backbone_dtype: str = "fp32"
    image_size: int = 224
    # CLIP layers tapped: 0 = tokens after ln_pre, k = output of block k (1-based). Blocks after the last
    # tap are never run (unless clip_image_embedding).
    taps: tuple[int, ...] = (0, 3, 6, 9, 11)
    # Keep the tower's blocks after the last tap, ln_post and proj (and the text tower) for CLIP's own image
    # embedding and free-text search (docs/search.md, "Free text"); off: those blocks are never built or run.
    clip_image_embedding: bool = False
    side_width: int = 240
    side_heads: int = 6
    side_mlp_ratio: float = 4.0
    side_patch_size: int = 16
    # The reference builds an 8-block spatial ViT and runs 7 of them; only the 7 that run are built here.
    spatial_depth: int = 7
    # The temporal side net has one block per frame, so its depth is the number of frames it can take.
    frames: int = 6
    fusion_depth: int = 1
    fusion_drop_path: float = 0.1
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    padding: str = "centre"
    threshold: float = 0.45
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.backbone_dtype not in PRECISIONS:
            problems.append(f"backbone_dtype {self.backbone_dtype!r} not in {PRECISIONS}")
        if self.padding not in PADDING_MODES:
            problems.append(f"padding {self.padding!r} not in {PADDING_MODES}")
        if not self.taps or list(self.taps) != sorted(set(self.taps)) or self.taps[0] < 0:
            problems.append(f"taps {list(self.taps)} must be distinct, ascending and >= 0")
        if self.spatial_depth < len(self.taps):
            problems.append(
                f"spatial_depth {self.spatial_depth} is smaller than the number of taps "
                f"{len(self.taps)}: the spatial side net injects one tap before each of its first blocks"
            )
        if self.frames < 1:
            problems.append(f"frames must be >= 1, got {self.frames}")
        if self.side_width % self.side_heads:
            problems.append(f"side_width {self.side_width} is not divisible by side_heads {self.side_heads}")
        if self.image_size % self.side_patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of side_patch_size {self.side_patch_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need three values each, std > 0")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold {self.threshold} must be in (0, 1)")
        if problems:
            raise ConfigError(f"invalid config {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("taps", "mean", "std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VTFPARConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        for key in ("taps", "mean", "std"):
            if key in data:
                data[key] = tuple(data[key])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"incomplete config: {exc}") from None

    def replace(self, **overrides) -> VTFPARConfig:
        return VTFPARConfig.from_dict({**self.to_dict(), **overrides})


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def get_config(preset: str, **overrides) -> VTFPARConfig:
    """The config of a built-in preset (or a preset JSON file path), with fields overridden by keyword."""
    path = PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        path = Path(preset)
        if not path.is_file():
            raise ConfigError(f"unknown preset {preset!r}; built-in presets: {list_presets()}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read preset JSON: {exc}") from None
    return VTFPARConfig.from_dict({**data, **overrides})
