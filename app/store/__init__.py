"""Stored tracks: every track a stream ends and every upload answered with ``store=true``, searchable by
attributes (``GET /tracks``), with a thumbnail each. See docs/search.md."""

from .embeddings import TrackEmbeddings
from .image_embeddings import ImageEmbeddings
from .limits import SearchLimit
from .records import AttributeSpec, ModelSpec, NewTrack, StoredAttribute, StoredTrack
from .search import MAX_LIMIT, Search
from .store import Page, StoredModel, TrackStore

__all__ = [
    "MAX_LIMIT",
    "AttributeSpec",
    "ImageEmbeddings",
    "ModelSpec",
    "NewTrack",
    "Page",
    "Search",
    "SearchLimit",
    "StoredAttribute",
    "StoredModel",
    "StoredTrack",
    "TrackEmbeddings",
    "TrackStore",
]
