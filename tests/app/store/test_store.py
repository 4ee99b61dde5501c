"""The store on SQLite and on a real PostgreSQL: migrated from empty to the tables the code expects, tracks kept
across a restart, searches ranked and filtered as documented and answered the same by both, erasure and the
retention purge delete tracks with their thumbnails."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.errors import ServiceError
from app.store import AttributeSpec, ModelSpec, NewTrack, Search
from app.store.retention import purge_periodically
from app.store.tables import Base

from .conftest import BACKENDS

NAMES = ["female", "backpack", "hat", "long_hair", "top_black"]
MODEL = ModelSpec("tiny", "0123456789ab", "mars", tuple(AttributeSpec(n, n, n.replace("_", " "), 0.5) for n in NAMES))
OTHER = ModelSpec("tiny", "ba9876543210", "mars", MODEL.attributes)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tracks(count: int, seed: int = 0, camera: str | None = None, thumbnails: bool = True) -> list[NewTrack]:
    rng = random.Random(seed)
    made = []
    for n in range(count):
        first = T0 + timedelta(minutes=rng.randrange(0, 600))
        made.append(
            NewTrack(
                camera=camera or f"cam-{n % 3}",
                source="upload",
                track_id=n,
                first_seen=first,
                last_seen=first + timedelta(seconds=rng.uniform(1, 90)),
                boxes=[[0.0, 1.0, 2.0, 30.0, 80.0], [0.5, 2.0, 2.0, 31.0, 80.0]],
                windows=1,
                probabilities=[round(rng.random(), 2) for _ in NAMES],  # ties, so that time breaks them
                thumbnail=np.full((40, 20, 3), n % 255, np.uint8) if thumbnails else None,
            )
        )
    return made


def by_name(track) -> dict[str, float]:
    return {a.name: a.probability for a in track.attributes}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_database_is_migrated_to_the_tables_the_code_expects(open_store, backend):
    store = open_store(backend)
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert {"models", "tracks", "alembic_version"} <= set(inspect(connection).get_table_names())
    open_store(backend, again=store)  # a second start migrates nothing and fails on nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restart_keeps_the_tracks(open_store, backend):
    store = open_store(backend)
    ids = store.add(MODEL, tracks(5))
    before = [store.get(i) for i in ids]
    store.close()
    again = open_store(backend, again=store)
    assert [again.get(i) for i in ids] == before
    assert all(again.thumbnail(i).startswith(b"\xff\xd8") for i in ids)  # JPEG


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stored_track_reads_back_as_given(open_store, backend):
    store = open_store(backend)
    given = tracks(1)[0]
    track = store.get(store.add(MODEL, [given])[0])
    assert (track.camera, track.track_id, track.first_seen, track.last_seen) == (
        given.camera,
        given.track_id,
        given.first_seen,
        given.last_seen,
    )
    assert track.boxes == given.boxes and track.model == MODEL
    assert [a.probability for a in track.attributes] == list(given.probabilities)
    assert [a.positive for a in track.attributes] == [p > 0.5 for p in given.probabilities]


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_ranks_by_joint_probability_then_time_within_the_filters(open_store, backend):
    store = open_store(backend)
    given = tracks(60)
    store.add(MODEL, given)
    store.add(OTHER, tracks(10, seed=1))  # another model's tracks: never in the served model's ranking
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=6)
    search = Search(required=("female", "backpack"), excluded=("hat",), camera="cam-1", since=since, until=until)
    found = store.search(search, MODEL).tracks
    expected = [
        t
        for t in given
        if t.camera == "cam-1" and t.last_seen >= since and t.first_seen <= until
        and t.probabilities[0] > 0.5 and t.probabilities[1] > 0.5 and t.probabilities[2] <= 0.5
    ]  # fmt: skip
    assert sorted(track.track_id for track, _ in found) == sorted(t.track_id for t in expected) != []
    for track, score in found:
        p = by_name(track)
        assert math.isclose(score, p["female"] * p["backpack"] * (1 - p["hat"]), rel_tol=1e-12)
    order = [(-score, -track.last_seen.timestamp(), -track.id) for track, score in found]
    assert order == sorted(order)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pages_follow_each_other_without_gaps_or_repeats(open_store, backend):
    store = open_store(backend)
    store.add(MODEL, tracks(25))
    whole = store.search(Search(required=("long_hair",), min_probability=0.2, limit=200), MODEL)
    pages, cursor = [], None
    while True:
        page = store.search(Search(required=("long_hair",), min_probability=0.2, limit=4, cursor=cursor), MODEL)
        pages += [track.id for track, _ in page.tracks]
        if (cursor := page.cursor) is None:
            break
    assert pages == [track.id for track, _ in whole.tracks]
    with pytest.raises(ServiceError, match="another query"):
        store.search(Search(required=("hat",), cursor=store.search(Search(limit=1), MODEL).cursor), MODEL)


def test_sqlite_and_postgresql_give_the_same_answers(open_store, postgres):
    stores = [open_store("sqlite"), open_store("postgres")]
    searches = [
        Search(),
        Search(required=("female",), limit=7),
        Search(required=("female", "top_black"), excluded=("hat",), min_probability=0.3),
        Search(required=("backpack",), camera="cam-2", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=5)),
        Search(excluded=("long_hair", "hat"), until=T0 + timedelta(hours=3)),
    ]
    answers = []
    for store in stores:
        store.add(MODEL, tracks(80, seed=3))
        answers.append([[(t.id, t.camera, score) for t, score in store.search(s, MODEL).tracks] for s in searches])
    assert answers[0] == answers[1]
    assert all(answers[0][:4])


@pytest.mark.parametrize("backend", BACKENDS)
def test_another_models_tracks_are_searched_only_when_asked_for(open_store, backend):
    store = open_store(backend)
    store.add(OTHER, tracks(4))
    assert store.search(Search(), MODEL).tracks == []
    page = store.search(Search(model=OTHER.key), MODEL)
    assert page.model == OTHER and len(page.tracks) == 4
    with pytest.raises(ServiceError, match="no tracks of it"):
        store.search(Search(model="tiny:nothere"), MODEL)
    with pytest.raises(ServiceError, match="closest: female"):
        store.search(Search(required=("femal",)), MODEL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_erasure_and_retention_delete_tracks_and_their_thumbnails(open_store, backend):
    store = open_store(backend)
    ids = store.add(MODEL, tracks(30))
    pictures = {i: store.thumbnail(i) for i in ids}

    def files() -> set[bytes]:
        return {path.read_bytes() for path in store.thumbnails.folder.rglob("*.jpg")}

    gone = store.erase(camera="cam-0", until=T0 + timedelta(hours=5))
    kept = [i for i in ids if store.get(i) is not None]
    assert gone == len(ids) - len(kept) > 0
    for i in ids:
        track = store.get(i)
        assert (store.thumbnail(i) is None) == (track is None)
        if track is not None:
            assert track.camera != "cam-0" or track.first_seen > T0 + timedelta(hours=5)
    assert files() == {pictures[i] for i in kept}  # every picture of the erased tracks went, no other
    # Retention: 1 day, seen from a day and 5 hours later, removes what was last seen before T0 + 5 h.
    purged = store.purge(1, now=T0 + timedelta(days=1, hours=5))
    left = [i for i in kept if store.get(i) is not None]
    assert purged == len(kept) - len(left) > 0
    assert all(store.get(i).last_seen >= T0 + timedelta(hours=5) for i in left)
    assert files() == {pictures[i] for i in left}
    assert store.purge(0) == 0


def test_without_thumbnails_no_files_are_kept(open_store):
    store = open_store("sqlite")
    store.keep_thumbnails = False
    ids = store.add(MODEL, tracks(3))
    assert all(store.thumbnail(i) is None for i in ids)
    assert not list(store.thumbnails.folder.rglob("*.jpg"))


def test_the_periodic_purge_runs_until_cancelled(open_store):
    store = open_store("sqlite")
    old, new = tracks(2)
    old.first_seen = old.last_seen = datetime.now(UTC) - timedelta(days=3)
    new.first_seen = new.last_seen = datetime.now(UTC)
    old_id, new_id = store.add(MODEL, [old, new])

    async def purge_for_a_moment() -> None:
        task = asyncio.create_task(purge_periodically(store, retention_days=2, every_s=0.01))
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(purge_for_a_moment())
    assert store.get(old_id) is None and store.get(new_id) is not None
