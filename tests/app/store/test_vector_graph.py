"""Appearance search through the approximate graph (FAISS HNSW): the filters and the cursor hold exactly, an erased
track never comes back from it, its file survives a restart and is rebuilt when deleted or damaged, and it finds
the exact answer's tracks (recall@10 >= 0.95 on a few thousand embeddings shaped like a model's)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
import pytest

from app.store import TrackEmbeddings
from app.store.similar import similar_tracks
from app.store.vectors import Filters, VectorIndex
from benchmarks.similar import appearances

from .test_embeddings import MODEL, START, sighting

WIDTH = 48
T0 = datetime(2026, 3, 1)


@pytest.fixture(autouse=True)
def through_the_graph(monkeypatch):
    """Every search with a row passing its filters goes through the graph, asking it for as few candidates as the
    service would at a million tracks' scale (a few hundredths of the graph)."""
    monkeypatch.setattr(VectorIndex, "EXACT_BELOW", 1)
    monkeypatch.setattr(VectorIndex, "CANDIDATES", 40)
    monkeypatch.setattr(VectorIndex, "MOST_CANDIDATES", 640)


def filled(size: int, seed: int = 0) -> VectorIndex:
    rng = np.random.default_rng(seed)
    index = VectorIndex(WIDTH)
    first = [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 24 * 60, size)]
    cameras = [f"cam-{c}" for c in rng.integers(0, 4, size)]
    index.add(list(range(1, size + 1)), appearances(size, WIDTH, rng), cameras, first, first)
    return index


def exact(index: VectorIndex, query: np.ndarray, filters: Filters, limit: int) -> list[int]:
    """The true answer: the filters' rows by score, a full sort."""
    rows = index._within(filters)
    scores = index.scores(query, rows)
    return [int(index.ids[rows][i]) for i in np.lexsort((-index.ids[rows], -scores))[:limit]]


def test_filters_and_pages_hold_exactly():
    index = filled(3000)
    query = index.vector(7)
    since, until = T0 + timedelta(hours=6), T0 + timedelta(hours=12)
    wanted = set(index.ids[index._within(Filters("cam-2", since, until, exclude=7))].tolist())
    assert 100 < len(wanted) < 500  # narrow: most of the graph's nodes are outside the filters

    paged: list[tuple[int, float]] = []
    after = None
    while page := index.search(query, 25, Filters("cam-2", since, until, 7, after)):
        paged += page
        after = (page[-1][1], page[-1][0])
    tracks = [track for track, _ in paged]
    assert set(tracks) <= wanted and len(set(tracks)) == len(tracks)  # within the filters, each once
    assert paged == sorted(paged, key=lambda hit: (-hit[1], -hit[0]))  # one order across the pages


def test_free_text_gets_every_filtered_tracks_exact_cosine_however_many_pass():
    index = filled(3000)
    query = index.vector(11)
    assert query is not None
    since = T0 + timedelta(hours=6)
    cosines = index.similarities(query, Filters("cam-1", since))
    rows = index._within(Filters("cam-1", since))
    assert len(rows) > 300 and sorted(cosines) == sorted(index.ids[rows].tolist())
    stored = np.stack([index.vector(int(track)) for track in index.ids[rows]])
    np.testing.assert_allclose([cosines[int(t)] for t in index.ids[rows]], stored @ query, atol=1e-6)


def test_a_tracks_score_does_not_depend_on_the_rows_scored_with_it():
    """Pages through the graph score different candidates for one query; the cursor compares scores exactly."""
    index = filled(3000)
    query, rng = index.vector(11), np.random.default_rng(3)
    alone = np.concatenate([index.scores(query, np.array([row])) for row in range(len(index))])
    for _ in range(20):
        rows = np.sort(rng.choice(len(index), int(rng.integers(1, 1200)), replace=False))
        assert np.array_equal(index.scores(query, rows), alone[rows])


@pytest.mark.parametrize("camera", [None, "cam-1"])
def test_the_graph_finds_the_exact_answer(camera):
    index = filled(4000, seed=1)
    rng = np.random.default_rng(2)
    found = 0
    for row in rng.integers(0, len(index), 100):
        query = index.vector(int(index.ids[row]))
        top = [track for track, _ in index.search(query, 10, Filters(camera))]
        found += len(set(top) & set(exact(index, query, Filters(camera), 10)))
    assert found / 1000 >= 0.95


def test_an_erased_track_never_comes_back_from_the_graph(tmp_path):
    index = filled(2000)
    gone = [5, 6, 700, 1999]
    slots = index.slots[np.isin(index.ids, gone)]
    queries = [index.vector(track).copy() for track in gone]  # each its own nearest neighbour until erased
    assert index.remove(gone) == 4
    for query in queries:
        assert not set(gone) & {hit for hit, _ in index.search(query, 50, Filters())}
    assert not index.graph.stored()[slots].any()  # the erased vectors left the graph's memory

    index.save(tmp_path / "model-1.npz")
    reloaded = VectorIndex.load(tmp_path / "model-1.npz")
    assert not reloaded.graph.stored()[slots].any()  # and its file
    assert not set(gone) & {hit for hit, _ in reloaded.search(query, 2000, Filters())}


@pytest.fixture
def stored(open_store, tmp_path):
    store = open_store("sqlite")
    embeddings = TrackEmbeddings.attach(store, tmp_path)
    rng = np.random.default_rng(1)
    looks = np.random.default_rng(0).standard_normal((60, 16)).astype(np.float32)
    gate = store.add(MODEL, [sighting(look, "gate", i, rng) for i, look in enumerate(looks)])
    store.add(MODEL, [sighting(look, "hall", 100 + i, rng) for i, look in enumerate(looks)])
    return store, embeddings, gate


def answers(store, embeddings, track: int) -> list[tuple[int, float]]:
    return [(t.id, score) for t, score in similar_tracks(store, embeddings, track, limit=30).tracks]


@pytest.mark.parametrize("damage", ["deleted", "garbage", "older"])
def test_a_missing_or_damaged_graph_file_is_rebuilt_with_the_same_answers(open_store, stored, tmp_path, caplog, damage):
    store, embeddings, gate = stored
    before = answers(store, embeddings, gate[3])
    embeddings.save()
    model_id = embeddings.of_track(gate[3])[0]
    graph = embeddings.path(model_id).with_suffix(".hnsw")
    caplog.set_level(logging.INFO, "app.store.embeddings")

    restarted = TrackEmbeddings.attach(open_store("sqlite", again=store), tmp_path)
    assert "rebuilt" not in caplog.text and answers(store, restarted, gate[3]) == before

    if damage == "deleted":
        graph.unlink()
    elif damage == "garbage":
        graph.write_bytes(b"not a graph" * 100)
    else:  # a graph saved before the last tracks were added: rows without a slot
        restarted._indexes[model_id].graph.index.reset()
        restarted._indexes[model_id].graph.save(graph)
    rebuilt = TrackEmbeddings.attach(open_store("sqlite", again=store), tmp_path)
    assert "rebuilt the appearance index" in caplog.text and graph.is_file()
    assert answers(store, rebuilt, gate[3]) == before


def test_erasure_reaches_the_graph_through_the_store(stored):
    store, embeddings, gate = stored
    assert store.erase(camera="hall") == 60
    index = embeddings._indexes[embeddings.of_track(gate[0])[0]]
    assert index.graph.size == 120 and len(index) == 60  # the hall's 60 slots are dead
    assert {t.camera for t, _ in similar_tracks(store, embeddings, gate[0], limit=200).tracks} == {"gate"}
    assert store.purge(retention_days=1, now=START + timedelta(days=1, minutes=30)) == 30
    assert sorted(t.id for t, _ in similar_tracks(store, embeddings, gate[40], limit=200).tracks) == (
        gate[30:40] + gate[41:]
    )
