"""The search's columnar side index chooses candidates and the database ranks them: every page it gives is the page
the plain statement gives (ranking by joint probability, then time, then id; pages by keyset), on both databases,
with equal scores, after erasures, and with a second instance writing to the same PostgreSQL."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from app.store import Search

from .conftest import BACKENDS
from .test_store import MODEL, NAMES, T0, tracks


def ready(store):
    deadline = time.monotonic() + 30
    while not store.columns.ready:
        assert time.monotonic() < deadline, "the columns were not built"
        time.sleep(0.01)
    return store


def pages(store, search: Search, columns: bool) -> list[list[tuple[int, float]]]:
    """Every page of the search, through the columns or through the plain statement."""
    store.columns.ready = columns
    found, cursor = [], None
    while True:
        page = store.search(Search(**{**vars(search), "cursor": cursor}), MODEL)
        found.append([(track.id, score) for track, score in page.tracks])
        if (cursor := page.cursor) is None:
            store.columns.ready = True
            return found


def searches(rng: random.Random, count: int) -> list[Search]:
    made = []
    for _ in range(count):
        names = rng.sample(NAMES, rng.randrange(1, 4))
        excluded = tuple(names[: rng.randrange(0, len(names))])
        since = T0 + timedelta(minutes=rng.randrange(0, 500)) if rng.random() < 0.5 else None
        made.append(
            Search(
                required=tuple(n for n in names if n not in excluded),
                excluded=excluded,
                camera=rng.choice([None, "cam-0", "cam-2", "nowhere"]),
                since=since,
                until=since + timedelta(hours=3) if since and rng.random() < 0.7 else None,
                min_probability=rng.choice([None, 0.3]),
                limit=rng.choice([4, 50]),
            )
        )
    return made


@pytest.mark.parametrize("backend", BACKENDS)
def test_pages_through_the_columns_are_the_plain_statements_pages(open_store, backend):
    store = ready(open_store(backend))
    store.add(MODEL, tracks(150, seed=3))  # probabilities rounded to 0.01: many equal scores
    continuous = tracks(150, seed=4)
    for track in continuous:
        track.probabilities = [random.Random(track.track_id).random() for _ in NAMES]
    store.add(MODEL, continuous)
    for search in searches(random.Random(5), 20):
        assert pages(store, search, columns=True) == pages(store, search, columns=False), search


@pytest.mark.parametrize("backend", BACKENDS)
def test_erased_tracks_leave_the_columns_and_new_ones_join(open_store, backend):
    store = ready(open_store(backend))
    ids = store.add(MODEL, tracks(60))
    store.erase(camera="cam-1")
    again = store.add(MODEL, tracks(30, seed=9, camera="cam-1"))  # SQLite may reuse the erased ids
    search = Search(required=("female",), limit=200)
    listed = [track.id for track, _ in store.search(search, MODEL).tracks]
    assert listed == [i for i, _ in pages(store, search, columns=False)[0]]
    assert set(listed) <= (set(ids) | set(again)) and all(store.get(i).camera for i in listed)


@pytest.mark.postgres
def test_a_second_instance_sees_the_first_ones_writes_and_erasures(open_store):
    first = ready(open_store("postgres"))
    second = ready(open_store("postgres", again=first))
    search = Search(required=("female",), excluded=("hat",), limit=200)
    ids = first.add(MODEL, tracks(80))
    assert [t.id for t, _ in second.search(search, MODEL).tracks] == [i for i, _ in pages(first, search, False)[0]]
    first.erase(camera="cam-0")
    listed = [t.id for t, _ in second.search(search, MODEL).tracks]
    assert listed == [i for i, _ in pages(first, search, False)[0]] and set(listed) < set(ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_search_with_attributes_on_an_empty_store_answers_no_tracks_then_finds_the_first(open_store, backend):
    """The console searches before the first camera's first track is stored: an empty page, not a 500."""
    store = ready(open_store(backend))
    search = Search(required=("female",), excluded=("hat",), limit=50)
    assert store.search(search, MODEL).tracks == []
    store.add(MODEL, tracks(10))
    assert [t.id for t, _ in store.search(search, MODEL).tracks] == [i for i, _ in pages(store, search, False)[0]]
