"""What goes into the store and what comes out of it, as plain data (no SQLAlchemy, no HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    group: str
    phrase: str
    threshold: float  # positive iff probability > threshold


@dataclass(frozen=True)
class ModelSpec:
    """A model whose results are stored. Name, version (checkpoint digest prefix) and schema identify it: tracks of
    different models are never ranked together."""

    name: str
    version: str
    schema_name: str
    attributes: tuple[AttributeSpec, ...]

    @property
    def key(self) -> str:
        """How clients name it (``model=`` of ``GET /tracks``)."""
        return f"{self.name}:{self.version}"

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @classmethod
    def of(cls, description) -> ModelSpec:
        """The served model (an ``app.inference.ModelDescription``)."""
        served, schema = description.served, description.schema
        attributes = tuple(
            AttributeSpec(a.name, a.group, a.phrase, float(t))
            for a, t in zip(schema.attributes, description.thresholds, strict=True)
        )
        return cls(served.name, served.version, served.schema, attributes)


@dataclass
class NewTrack:
    """One finished track, as any source (an upload, a live stream) hands it to the store."""

    camera: str
    source: str  # "upload" or "stream"
    track_id: int
    first_seen: datetime  # aware
    last_seen: datetime  # aware
    boxes: list[list[float]]  # [seconds after first_seen, x0, y0, x1, y1]
    windows: int  # clips the model saw, fused into the probabilities
    probabilities: Sequence[float]  # fused, in the model's schema order
    thumbnail: np.ndarray | None = None  # RGB uint8 best crop
    embedding: np.ndarray | None = None  # appearance embedding [W], unit length, fused over the windows
    image_embedding: np.ndarray | None = None  # CLIP image embedding [E] (free-text search), unit length, fused


@dataclass(frozen=True)
class StoredAttribute:
    name: str
    group: str
    probability: float
    threshold: float
    positive: bool


@dataclass(frozen=True)
class StoredTrack:
    id: int
    model: ModelSpec
    camera: str
    source: str
    track_id: int
    first_seen: datetime  # aware UTC
    last_seen: datetime
    boxes: list[list[float]] | None  # None in search results: only one track's reading carries its boxes
    windows: int
    attributes: list[StoredAttribute]
    has_thumbnail: bool


def naive_utc(moment: datetime) -> datetime:
    """How the database holds a time (see ``tables``); a naive time is taken to be UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def aware_utc(stored: datetime) -> datetime:
    return stored.replace(tzinfo=UTC)
