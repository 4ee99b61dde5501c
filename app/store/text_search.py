"""Free text in a sentence search (``q=`` words that name no attribute): the stored tracks ranked by the served
model's CLIP text embedding of those words against their CLIP image embeddings, fused with the attribute score.

    score = P_attributes * exp(s * (cos - 1))

``P_attributes`` is the search's joint probability (``app.store.search``; 1 without attributes), ``cos`` the cosine
of the text and image embeddings and ``s`` CLIP's learnt temperature (``exp(logit_scale)``, 100 for OpenAI's
weights). ``exp(s * cos)`` is the numerator of CLIP's own softmax over images for a text; its denominator is the
same for every track of one query, so this ranks as ``P_attributes`` times that softmax over the window would,
while a track's score does not depend on which other tracks are stored (a page's cursor stays valid as tracks come
and go). ``- 1`` puts a perfect match (cos 1) at the attribute score itself. Tracks without an image embedding
cannot be ranked by the text and are left out.

Exact: every track of the window that passes the attribute filters is scored (the database for ``P``, one matrix
product for ``cos``), then ordered by (score, id) and paged with a keyset cursor on them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .embeddings import decode_cursor, encode_cursor
from .image_embeddings import ImageEmbeddings
from .limits import SearchLimit
from .records import ModelSpec, naive_utc
from .search import Search
from .store import Page, TrackStore
from .vectors import Filters


@dataclass(frozen=True)
class FreeText:
    """What the served model read of the free words: their text (for the cursor) and embedding, and CLIP's
    temperature."""

    text: str
    embedding: np.ndarray  # [E], unit length
    logit_scale: float


def fused_scores(attribute_scores: dict[int, float], cosines: dict[int, float], logit_scale: float) -> dict[int, float]:
    """The fused score of every track that has both (see the module's formula)."""
    return {
        track: attribute_scores[track] * float(np.exp(logit_scale * (cosine - 1.0)))
        for track, cosine in cosines.items()
        if track in attribute_scores
    }


def text_search(
    store: TrackStore,
    images: ImageEmbeddings,
    search: Search,
    served: ModelSpec,
    free: FreeText,
    limit: SearchLimit | None = None,
) -> Page:
    """One page of tracks ranked by the fused score, best first (then the highest id). Blocks: on the store's pool."""
    model_id, model, attribute_scores = store.scores(search, served, limit)
    window = Filters(
        camera=search.camera,
        since=None if search.since is None else naive_utc(search.since),
        until=None if search.until is None else naive_utc(search.until),
    )
    scores = fused_scores(attribute_scores, images.cosines(model_id, free.embedding, window), free.logit_scale)
    fingerprint = hashlib.sha256(json.dumps([search.fingerprint(), free.text]).encode()).hexdigest()[:16]
    ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    if search.cursor is not None:
        after = decode_cursor(search.cursor, fingerprint)
        ranked = [(track, score) for track, score in ranked if (score, track) < after]
    page = ranked[: search.limit]
    found = [(store.get(track), score) for track, score in page]
    tracks = [(stored, score) for stored, score in found if stored is not None]  # erased meanwhile
    more = len(page) == search.limit and len(ranked) > search.limit
    return Page(model, tracks, encode_cursor(page[-1][1], page[-1][0], fingerprint) if more else None)
