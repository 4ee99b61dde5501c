"""Appearance embeddings in the track store: kept per track beside it, searched by similarity within a camera and a
time window, erased and purged with their tracks, and their index files loaded at a restart or rebuilt when gone."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.errors import ServiceError
from app.store import AttributeSpec, ModelSpec, NewTrack, TrackEmbeddings
from app.store.similar import similar_tracks

from .conftest import BACKENDS

MODEL = ModelSpec("tiny", "0123456789ab", "two", (AttributeSpec("hat", "hat", "a hat", 0.5),))
OTHER = ModelSpec("tiny", "ba9876543210", "two", MODEL.attributes)
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WIDTH = 16


def identities(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, WIDTH)).astype(np.float32)


def sighting(look: np.ndarray, camera: str, minute: int, rng: np.random.Generator) -> NewTrack:
    """One tracklet of an identity: its look plus the noise of another camera and pose, unit length."""
    vector = look + 0.3 * rng.standard_normal(WIDTH).astype(np.float32)
    at = START + timedelta(minutes=minute)
    return NewTrack(
        camera=camera,
        source="stream",
        track_id=minute,
        first_seen=at,
        last_seen=at + timedelta(seconds=20),
        boxes=[[0.0, 1, 2, 3, 4]],
        windows=2,
        probabilities=[0.7],
        embedding=vector / np.linalg.norm(vector),
    )


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def stores(open_store, backend, tmp_path):
    """A store with 40 identities seen by camera "gate" (minute i) then by camera "hall" (minute 100 + i)."""
    store = open_store(backend)
    embeddings = TrackEmbeddings.attach(store, tmp_path / backend)
    rng = np.random.default_rng(1)
    looks = identities(40)
    gate = store.add(MODEL, [sighting(look, "gate", i, rng) for i, look in enumerate(looks)])
    hall = store.add(MODEL, [sighting(look, "hall", 100 + i, rng) for i, look in enumerate(looks)])
    return store, embeddings, gate, hall


def test_a_tracks_other_sighting_in_another_camera_comes_first(stores):
    store, embeddings, gate, hall = stores
    for at_gate, in_hall in zip(gate, hall, strict=True):
        page = similar_tracks(store, embeddings, at_gate, limit=5)
        ranked = [track.id for track, _ in page.tracks]
        assert ranked[0] == in_hall and at_gate not in ranked
        scores = [score for _, score in page.tracks]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0.5


def test_camera_and_time_filters_hold(stores):
    store, embeddings, gate, hall = stores
    page = similar_tracks(store, embeddings, gate[0], camera="gate", limit=200)
    assert {track.camera for track, _ in page.tracks} == {"gate"} and len(page.tracks) == 39
    since = START + timedelta(minutes=110)
    page = similar_tracks(store, embeddings, gate[0], since=since, until=since + timedelta(minutes=5), limit=200)
    assert sorted(track.id for track, _ in page.tracks) == hall[10:16]
    assert similar_tracks(store, embeddings, gate[0], camera="nowhere").tracks == []


def test_pages_continue_where_the_last_ended(stores):
    store, embeddings, gate, _ = stores
    whole = [track.id for track, _ in similar_tracks(store, embeddings, gate[3], limit=200).tracks]
    paged, cursor = [], None
    while True:
        page = similar_tracks(store, embeddings, gate[3], limit=7, cursor=cursor)
        paged += [track.id for track, _ in page.tracks]
        if (cursor := page.cursor) is None:
            break
    assert paged == whole and len(whole) == 79
    first = similar_tracks(store, embeddings, gate[3], limit=2)
    with pytest.raises(ServiceError, match="another query"):
        similar_tracks(store, embeddings, gate[3], camera="gate", cursor=first.cursor)


def test_erased_and_purged_tracks_leave_the_index(stores):
    store, embeddings, gate, hall = stores
    assert store.erase(camera="hall") == 40
    ranked = [track.id for track, _ in similar_tracks(store, embeddings, gate[0], limit=200).tracks]
    assert sorted(ranked) == sorted(gate[1:])
    assert embeddings.of_track(hall[0]) is None
    assert store.purge(retention_days=1, now=START + timedelta(days=1, minutes=20)) == 20
    kept = similar_tracks(store, embeddings, gate[30], limit=200).tracks
    assert sorted(t.id for t, _ in kept) == gate[20:30] + gate[31:]


def test_a_model_change_never_mixes_spaces(stores):
    store, embeddings, gate, _ = stores
    rng = np.random.default_rng(2)
    [newer] = store.add(OTHER, [sighting(identities(40)[0], "gate", 500, rng)])
    page = similar_tracks(store, embeddings, gate[0], limit=200)
    assert page.model == MODEL and newer not in [track.id for track, _ in page.tracks]
    assert similar_tracks(store, embeddings, newer).tracks == []  # alone in its model's space


def test_a_track_without_embedding_is_a_clear_conflict(stores):
    store, embeddings, *_ = stores
    [bare] = store.add(MODEL, [NewTrack("gate", "upload", 1, START, START, [[0.0, 1, 2, 3, 4]], 1, [0.2])])
    with pytest.raises(ServiceError) as raised:
        similar_tracks(store, embeddings, bare)
    assert raised.value.code.value == "no_embedding"
    with pytest.raises(ServiceError) as raised:
        similar_tracks(store, embeddings, 10**9)
    assert raised.value.code.value == "not_found"


def test_the_index_is_loaded_at_a_restart_and_rebuilt_when_deleted(open_store, stores, backend, tmp_path, caplog):
    store, embeddings, gate, hall = stores
    before = [(t.id, s) for t, s in similar_tracks(store, embeddings, gate[5], limit=20).tracks]
    embeddings.save()
    path = embeddings.path(embeddings.of_track(gate[5])[0])
    assert path.is_file()

    caplog.set_level(logging.INFO, "app.store.embeddings")
    again = open_store(backend, again=store)
    reloaded = TrackEmbeddings.attach(again, tmp_path / backend)
    assert "rebuilt" not in caplog.text
    assert [(t.id, s) for t, s in similar_tracks(again, reloaded, gate[5], limit=20).tracks] == before

    path.unlink()
    rebuilt = TrackEmbeddings.attach(open_store(backend, again=store), tmp_path / backend)
    assert "rebuilt the appearance index" in caplog.text and path.is_file()
    assert [(t.id, s) for t, s in similar_tracks(again, rebuilt, gate[5], limit=20).tracks] == before


def test_a_stale_index_file_is_rebuilt_and_another_instances_tracks_are_found(open_store, stores, backend, tmp_path):
    store, embeddings, gate, hall = stores
    embeddings.save()
    other_instance = TrackEmbeddings.attach(open_store(backend, again=store), tmp_path / backend)
    rng = np.random.default_rng(3)
    [late] = store.add(MODEL, [sighting(identities(40)[7], "yard", 300, rng)])  # written by the first instance
    assert late in [t.id for t, _ in similar_tracks(store, other_instance, gate[7], limit=3).tracks]
    store.erase(camera="yard")
    stale_restart = TrackEmbeddings.attach(open_store(backend, again=store), tmp_path / backend)  # file has 80
    assert late not in [t.id for t, _ in similar_tracks(store, stale_restart, gate[7], limit=200).tracks]


def test_a_changed_embedding_of_the_same_model_never_mixes_with_the_older_one(open_store, stores, backend, tmp_path):
    """The network's embedding changed (another width) while the model's fingerprint did not: the new rows take the
    model's index, the older ones answer no_embedding until `vtfpar reembed` replaces them, restarts included."""
    store, embeddings, gate, _ = stores
    wider = np.ones(WIDTH + 8, np.float32) / np.sqrt(WIDTH + 8)
    [older_kind] = store.add(MODEL, [sighting(identities(1)[0], "gate", 600, np.random.default_rng(4))])
    [newer] = store.add(
        MODEL, [NewTrack("yard", "stream", 7, START, START, [[0.0, 1, 2, 3, 4]], 1, [0.2], embedding=wider)]
    )
    for searcher in (embeddings, TrackEmbeddings.attach(open_store(backend, again=store), tmp_path / backend)):
        assert [track.id for track, _ in similar_tracks(store, searcher, newer).tracks] == []  # alone in its space
        for older in (gate[0], older_kind):
            with pytest.raises(ServiceError) as raised:
                similar_tracks(store, searcher, older)
            assert raised.value.code.value == "no_embedding" and "vtfpar reembed" in raised.value.message
