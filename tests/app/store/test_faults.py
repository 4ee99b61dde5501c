"""Nothing orphaned, nothing lost: a failure at each step of storing or erasing tracks leaves no picture without its
row (at once, or after the sweep for a crash), and no half-written picture under a real name."""

from __future__ import annotations

import errno
import os
import time

import pytest
from sqlalchemy import bindparam, event, text

from .conftest import BACKENDS
from .test_store import MODEL, tracks


def pictures(store) -> list[str]:
    return sorted(path.name for path in store.thumbnails.folder.rglob("*") if path.is_file())


def backdate(store, seconds: float) -> None:
    then = time.time() - seconds
    for path in store.thumbnails.folder.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def count(store) -> int:
    return sum(model.tracks for model in store.models())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_disk_on_the_third_picture_leaves_no_picture_and_no_row(open_store, backend, monkeypatch):
    store = open_store(backend)
    written = 0
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        nonlocal written
        written += 1
        if written == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        store.add(MODEL, tracks(5))
    assert pictures(store) == []  # neither the two written nor the third's partial file
    assert count(store) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_commit_leaves_no_picture(open_store, backend):
    store = open_store(backend)

    def refuse(connection, cursor, statement, *args) -> None:
        if statement.startswith("UPDATE models"):  # after the tracks' insert, inside the transaction
            raise RuntimeError("the database went away")

    event.listen(store.engine, "before_cursor_execute", refuse)
    with pytest.raises(Exception, match="went away"):
        store.add(MODEL, tracks(4))
    event.remove(store.engine, "before_cursor_execute", refuse)
    assert pictures(store) == []
    assert count(store) == 0
    assert len(store.add(MODEL, tracks(2))) == 2 and len(pictures(store)) == 2  # and the store goes on


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_sweep_removes_pictures_a_crash_left_without_rows_after_the_grace(open_store, backend):
    store = open_store(backend)
    kept = store.add(MODEL, tracks(3))
    # A crash between writing the files and committing their rows: pictures, no rows; and a partial file.
    for track in tracks(2, seed=1):
        store.thumbnails.save(track.thumbnail)
    (store.thumbnails.folder / "ab").mkdir(exist_ok=True)
    (store.thumbnails.folder / "ab" / "abcd.jpg.partial").write_bytes(b"\xff\xd8")
    assert len(pictures(store)) == 6
    assert store.sweep_thumbnails(grace_s=3600) == 0  # young: perhaps still being committed
    backdate(store, 7200)
    assert store.sweep_thumbnails(grace_s=3600) == 3
    assert len(pictures(store)) == 3
    assert all(store.thumbnail(i) is not None for i in kept)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crash_between_deleting_rows_and_unlinking_files_is_swept(open_store, backend, monkeypatch):
    store = open_store(backend)
    store.add(MODEL, tracks(6))

    def crash(names) -> None:
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(store.thumbnails, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        store.erase(camera="cam-0")
    monkeypatch.undo()
    assert count(store) == 4 and len(pictures(store)) == 6
    backdate(store, 7200)
    assert store.sweep_thumbnails(grace_s=3600) == 2
    assert len(pictures(store)) == 4


def test_a_picture_erased_after_its_row_was_read_is_none_not_an_error(open_store):
    store = open_store("sqlite")
    [track] = store.add(MODEL, tracks(1))
    for path in store.thumbnails.folder.rglob("*.jpg"):
        path.unlink()
    assert store.thumbnail(track) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_side_data_stays_in_step_with_adds_and_erasures(open_store, backend):
    """Another feature's table keyed by track id (alerts, embeddings) is written and erased in the tracks' own
    transactions: a failure in it undoes the add, pictures included."""
    store = open_store(backend)
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE side (track_id BIGINT PRIMARY KEY REFERENCES tracks(id))"))

    def added(connection, ids, new) -> None:
        assert len(ids) == len(new)
        connection.execute(text("INSERT INTO side VALUES (:id)"), [{"id": i} for i in ids])

    def erasing(connection, ids) -> None:
        gone = text("DELETE FROM side WHERE track_id IN :ids").bindparams(bindparam("ids", expanding=True))
        connection.execute(gone, {"ids": ids})

    def side() -> set[int]:
        with store.engine.connect() as connection:
            return set(connection.execute(text("SELECT track_id FROM side")).scalars())

    store.listen(added=added, erasing=erasing)
    ids = store.add(MODEL, tracks(6))
    assert side() == set(ids)
    store.erase(camera="cam-0")
    assert side() == {i for i in ids if store.get(i) is not None} and len(side()) == 4

    def broken(connection, ids, new) -> None:
        raise RuntimeError("the side table refused")

    store.listen(added=broken)
    with pytest.raises(RuntimeError, match="refused"):
        store.add(MODEL, tracks(3, seed=7))
    assert len(side()) == 4 and count(store) == 4 and len(pictures(store)) == 4
