"""`vtfpar reembed`: stored tracks embedded the older way (or by another model) get the served model's embedding of
their thumbnail, batched and resumable, and are found by similar search again; bad paths give one line and exit 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import app.reembed
from app.inference import ModelRunner
from app.reembed import main
from app.settings import Settings
from app.store import ModelSpec, NewTrack, TrackEmbeddings, TrackStore
from app.store.similar import similar_tracks

from .conftest import BACKENDS

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
COLOURS = [(200, 30, 30), (30, 30, 200), (240, 240, 240), (20, 20, 20)]


def person(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    crop = np.full((64, 32, 3), 90, np.uint8)
    crop[8:32, 6:26], crop[32:60, 8:24] = top, bottom
    return crop


def track(camera: str, minute: int, thumbnail: np.ndarray | None) -> NewTrack:
    """A track stored by the older code: an embedding of the older width (random)."""
    at = START + timedelta(minutes=minute)
    older = np.random.default_rng(minute).standard_normal(32).astype(np.float32)
    boxes = [[0.0, 1, 2, 3, 4]]
    return NewTrack(camera, "stream", minute, at, at, boxes, 1, [0.5] * 43, thumbnail, older / np.linalg.norm(older))


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> ModelSpec:
    runner = ModelRunner.load(Settings(data_dir=tmp_path_factory.mktemp("demo"), device="cpu"))
    return ModelSpec.of(runner.description)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reembedding_makes_older_tracks_searchable_again(open_store, demo_model, backend, tmp_path, capsys):
    store = open_store(backend)
    looks = [person(top, bottom) for top, bottom in zip(COLOURS, COLOURS[1:] + COLOURS[:1], strict=True)]
    gate = store.add(demo_model, [track("gate", i, look) for i, look in enumerate(looks)])
    hall = store.add(demo_model, [track("hall", 100 + i, look) for i, look in enumerate(looks)])
    [bare] = store.add(demo_model, [track("yard", 200, None)])
    data_dir = tmp_path / backend
    url = str(store.engine.url.render_as_string(hide_password=False)) if backend == "postgres" else None
    TrackEmbeddings.attach(store, data_dir).save()  # the index file of the older embeddings
    store.close()
    args = ["--data-dir", str(data_dir), "--device", "cpu", "--batch-size", "3"]
    args += ["--database-url", url.replace("+psycopg", "")] if url else []

    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "re-embedded 8 of 8 tracks" in out and err.count("re-embedded") == 3  # a progress line per batch
    assert not list((data_dir / "embeddings").glob("*.npz"))  # stale files gone: rebuilt at the next start

    store = open_store(backend, again=store)
    embeddings = TrackEmbeddings.attach(store, data_dir)
    for at_gate, at_hall in zip(gate, hall, strict=True):
        [(first, score), *_] = similar_tracks(store, embeddings, at_gate, limit=3).tracks
        assert first.id == at_hall and score == pytest.approx(1.0, abs=1e-4)  # the same picture, another camera
    assert embeddings.of_track(bare) is None  # no thumbnail: left as it was, not comparable

    assert main(args) == 0  # resumable: nothing is left to do
    assert "re-embedded 0 of 0 tracks" in capsys.readouterr().out


def test_a_bad_data_dir_or_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["--data-dir", str(tmp_path), "--device", "cpu"]) == 2
    assert "no track store" in capsys.readouterr().err
    TrackStore.open(None, tmp_path).close()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(broken), "--data-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checkpoint" in err and "\n" not in err


def test_an_onnx_export_reembeds_as_its_checkpoint_does(onnx_export, demo_model, tmp_path, capsys):
    checkpoint, onnx_file = onnx_export
    store = TrackStore.open(None, tmp_path)
    looks = [person(top, bottom) for top, bottom in zip(COLOURS, COLOURS[::-1], strict=True)]
    ids = store.add(demo_model, [track("gate", i, look) for i, look in enumerate(looks)])
    store.close()
    vectors = {}
    for served in (checkpoint, onnx_file):
        assert main(["--checkpoint", str(served), "--data-dir", str(tmp_path), "--device", "cpu"]) == 0
        assert f"re-embedded {len(ids)} of {len(ids)} tracks" in capsys.readouterr().out
        store = TrackStore.open(None, tmp_path)
        embeddings = TrackEmbeddings(store.engine, tmp_path / "embeddings")
        vectors[served] = np.stack([embeddings.of_track(i)[1] for i in ids])
        if served == onnx_file:  # stored by the demo model, searched in the space of the model that re-embedded them
            page = similar_tracks(store, TrackEmbeddings.attach(store, tmp_path), ids[0])
            assert page.model.name == "tiny" and page.model != demo_model and len(page.tracks) == len(ids) - 1
        store.close()
    np.testing.assert_allclose(vectors[onnx_file], vectors[checkpoint], atol=1e-4, rtol=0)


def test_a_stopped_run_continues_where_it_ended(open_store, demo_model, tmp_path, monkeypatch, capsys):
    store = open_store("sqlite")
    looks = [person(top, bottom) for top in COLOURS for bottom in COLOURS[:2]]
    store.add(demo_model, [track("gate", i, look) for i, look in enumerate(looks)])
    store.close()
    args = ["--data-dir", str(tmp_path / "sqlite"), "--device", "cpu", "--batch-size", "3"]
    write, batches = app.reembed.write, []

    def stopped_after_one_batch(*written):
        if batches:
            raise KeyboardInterrupt  # the operator's Ctrl-C during the second batch
        batches.append(write(*written))
        return batches[-1]

    monkeypatch.setattr(app.reembed, "write", stopped_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.undo()
    assert main(args) == 0
    assert f"re-embedded {len(looks) - 3} of {len(looks) - 3} tracks" in capsys.readouterr().out
