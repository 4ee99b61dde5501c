"""Free text against the stored tracks' CLIP image embeddings: the text goes through the model's CLIP text tower, a
track whose image embedding is that text's embedding ranks first, the score fuses the attribute probability with
the cosine (score = P * exp(s * (cos - 1))), pages continue exactly, and erasure and a restart keep the index in
step with the table."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from app.errors import ServiceError
from app.store import AttributeSpec, ImageEmbeddings, ModelSpec, NewTrack, Search
from app.store.text_search import FreeText, text_search
from model import create_model, get_config, load_schema

from .conftest import BACKENDS

MODEL = ModelSpec("tiny", "0123456789ab", "one", (AttributeSpec("hat", "hat", "a hat", 0.5),))
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def free():
    """ "umbrella" through a tiny model's CLIP text tower, with its temperature."""
    torch.manual_seed(0)
    model = create_model(get_config("tiny", clip_image_embedding=True), load_schema("mars")).eval()
    assert model.text_tower is not None
    return FreeText("umbrella", model.encode_text(["umbrella"])[0].numpy(), model.text_tower.logit_scale)


def track(minute: int, p_hat: float, image: np.ndarray | None, camera: str = "gate") -> NewTrack:
    at = START + timedelta(minutes=minute)
    boxes = [[0.0, 1, 2, 3, 4]]
    return NewTrack(camera, "upload", minute, at, at + timedelta(seconds=5), boxes, 1, [p_hat], image_embedding=image)


@pytest.fixture(params=BACKENDS)
def stored(request, open_store, free):
    """30 tracks with random image embeddings; "umbrella" (its image embedding is the text's, p(hat) 0.9);
    "umbrella without hat" (the same, p(hat) 0.3); one track without an image embedding."""
    store = open_store(request.param)
    images = ImageEmbeddings.attach(store)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((30, len(free.embedding))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hats = rng.uniform(0.05, 0.99, 30)
    cameras = ["gate" if i % 2 else "hall" for i in range(30)]
    made = [track(i, float(hats[i]), vectors[i], cameras[i]) for i in range(30)]
    ids = store.add(MODEL, made)
    [umbrella, bare_headed, bare] = store.add(
        MODEL, [track(40, 0.9, free.embedding), track(41, 0.3, free.embedding), track(42, 0.95, None)]
    )
    truth = {i: (float(p), float(v @ free.embedding)) for i, p, v in zip(ids, hats, vectors, strict=True)}
    truth |= {umbrella: (0.9, 1.0), bare_headed: (0.3, 1.0)}
    return store, images, truth, umbrella, bare_headed, bare


def expected(truth, free, required: bool) -> list[tuple[int, float]]:
    """The ranking computed here from the formula, independently of the store."""
    scores = {
        track: (p if required else 1.0) * math.exp(free.logit_scale * (cosine - 1.0))
        for track, (p, cosine) in truth.items()
        if not required or p > 0.5
    }
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def test_the_texts_own_embedding_ranks_first(stored, free):
    store, images, truth, umbrella, bare_headed, bare = stored
    page = text_search(store, images, Search(limit=200), MODEL, free)
    ranked = [(found.id, score) for found, score in page.tracks]
    assert {ranked[0][0], ranked[1][0]} == {umbrella, bare_headed}
    assert ranked[0][1] == pytest.approx(1.0, abs=1e-5)  # nothing asked of the attributes, cos 1
    assert bare not in [found for found, _ in ranked]  # no image embedding: the text cannot rank it
    assert [t for t, _ in ranked] == [t for t, _ in expected(truth, free, required=False)]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in expected(truth, free, required=False)], rel=1e-4)


def test_the_text_is_fused_with_the_attributes(stored, free):
    store, images, truth, umbrella, bare_headed, _ = stored
    page = text_search(store, images, Search(required=("hat",), limit=200), MODEL, free)
    ranked = [(found.id, score) for found, score in page.tracks]
    assert ranked[0] == (umbrella, pytest.approx(0.9, abs=1e-5))  # p(hat) times a perfect match
    assert bare_headed not in [t for t, _ in ranked]  # the same look, but it fails the required hat
    want = expected(truth, free, required=True)
    assert [t for t, _ in ranked] == [t for t, _ in want]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in want], rel=1e-4)


def test_filters_and_pages(stored, free):
    store, images, truth, *_ = stored
    whole = [found.id for found, _ in text_search(store, images, Search(limit=200), MODEL, free).tracks]
    paged, cursor = [], None
    while True:
        page = text_search(store, images, Search(limit=7, cursor=cursor), MODEL, free)
        paged += [found.id for found, _ in page.tracks]
        if (cursor := page.cursor) is None:
            break
    assert paged == whole and len(whole) == 32
    first = text_search(store, images, Search(limit=2), MODEL, free)
    other = FreeText("hat", free.embedding, free.logit_scale)
    with pytest.raises(ServiceError, match="another query"):
        text_search(store, images, Search(limit=2, cursor=first.cursor), MODEL, other)
    in_hall = text_search(store, images, Search(camera="hall", limit=200), MODEL, free).tracks
    assert {found.camera for found, _ in in_hall} == {"hall"} and len(in_hall) == 15


def test_erasure_and_a_restart_keep_the_index_in_step(stored, free, open_store, request):
    store, images, _, umbrella, bare_headed, _ = stored
    assert store.erase(camera="gate", since=START + timedelta(minutes=39)) == 3
    ranked = [found.id for found, _ in text_search(store, images, Search(limit=200), MODEL, free).tracks]
    assert umbrella not in ranked and bare_headed not in ranked and len(ranked) == 30
    backend = "postgres" if "postgres" in request.node.callspec.id else "sqlite"
    again = open_store(backend, again=store)
    rebuilt = ImageEmbeddings.attach(again)
    assert [found.id for found, _ in text_search(again, rebuilt, Search(limit=200), MODEL, free).tracks] == ranked
