"""Free text in GET /tracks?q= over HTTP against a real server: a checkpoint with clip_image_embedding stores each
track's CLIP image embedding as it answers, and ranks the sentence's free words through its own text tower, fused
with the attributes; the interpretation says what was read how, and that the random tiny tower makes the ranking
meaningless. A checkpoint without the text tower says why it did not read the free words."""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest
import torch

from benchmarks.media import encode
from model import create_model, get_config, load_checkpoint, load_schema, save_checkpoint
from training.synthetic.scenes import make_scene, write_mot

from .tokened import auth, tokened_server

pytestmark = pytest.mark.e2e
START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
SENTENCE = "a man carrying a red umbrella"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(get_config("tiny", clip_image_embedding=True), load_schema("mars"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny-text.safetensors"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with tokened_server(checkpoint, data) as running:
        yield running


@pytest.fixture(scope="module")
def stored(server, tmp_path_factory):
    """A scene of four walkers stored through /predict/tracks: the ids, and what the store kept of each (the
    probability of female and the CLIP image embedding), read from its database."""
    scene = make_scene(seed=5, walkers=4, num_frames=24, size=(96, 160))
    folder = tmp_path_factory.mktemp("scene")
    write_mot(scene.boxes, folder / "gt.txt")
    files = {
        "video": ("scene.mp4", encode("mp4", scene.frames)),
        "tracks": ("gt.txt", (folder / "gt.txt").read_bytes()),
    }
    params = {"store": "true", "camera": "gate-3", "start": START.isoformat()}
    answer = httpx.post(f"{server.url}/predict/tracks", files=files, **auth(**params))
    assert answer.status_code == 200, answer.text
    ids = answer.json()["stored"]
    female = load_schema("mars").names.index("female")
    with sqlite3.connect(server.settings.data_dir / "tracks.db") as db:
        p_female = {i: json.loads(p)[female] for i, p in db.execute("SELECT id, probabilities FROM tracks")}
        images = {
            i: np.frombuffer(v, np.float32)
            for i, v in db.execute("SELECT track_id, vector FROM track_image_embeddings")
        }
    assert sorted(images) == sorted(ids)  # every track got its image embedding from the forward pass
    return ids, p_female, images


def expected(checkpoint, text: str, stored, attribute) -> list[tuple[int, float]]:
    """The ranking computed here: the reference model's text tower, the formula, the stored vectors."""
    model = load_checkpoint(checkpoint).model
    assert model.text_tower is not None
    embedding = model.encode_text([text])[0].numpy()
    _, p_female, images = stored
    scores = {
        track: attribute(p_female[track]) * math.exp(model.text_tower.logit_scale * (float(vector @ embedding) - 1))
        for track, vector in images.items()
    }
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def test_free_text_is_ranked_by_the_served_text_tower_and_fused_with_the_attributes(server, stored, checkpoint):
    # min_probability 1: every track passes the excluded female, so the fusion orders all of them.
    answer = httpx.get(f"{server.url}/tracks", **auth(q=SENTENCE, min_probability=1.0))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    reading = body["interpretation"]
    assert reading["excluded"] == ["female"] and reading["free_text"] == "red umbrella"
    assert reading["unused"] == [] and reading["pretrained_tower"] is False and "means nothing" in reading["note"]
    want = expected(checkpoint, "red umbrella", stored, lambda p: 1 - p)
    assert len(want) == 4 and [t["id"] for t in body["tracks"]] == [track for track, _ in want]
    assert [t["score"] for t in body["tracks"]] == pytest.approx([score for _, score in want], rel=1e-4)
    plain = httpx.get(f"{server.url}/tracks", **auth(q="a red umbrella")).json()
    want = expected(checkpoint, "red umbrella", stored, lambda p: 1.0)
    assert [t["id"] for t in plain["tracks"]] == [track for track, _ in want]


def test_pages_continue_and_cursors_stay_with_their_text(server, stored):
    whole = httpx.get(f"{server.url}/tracks", **auth(q="a red umbrella")).json()["tracks"]
    first = httpx.get(f"{server.url}/tracks", **auth(q="a red umbrella", limit=3)).json()
    rest = httpx.get(f"{server.url}/tracks", **auth(q="a red umbrella", limit=3, cursor=first["next_cursor"])).json()
    assert [t["id"] for t in first["tracks"] + rest["tracks"]] == [t["id"] for t in whole]
    other = httpx.get(f"{server.url}/tracks", **auth(q="a green umbrella", limit=3, cursor=first["next_cursor"]))
    assert other.status_code == 422 and other.json()["error"]["code"] == "bad_search"


def test_a_model_without_the_text_tower_says_why_it_read_no_free_text(tiny_checkpoint, tmp_path):
    with tokened_server(tiny_checkpoint, tmp_path) as running:
        answer = httpx.get(f"{running.url}/tracks", **auth(q=SENTENCE))
    assert answer.status_code == 200, answer.text
    reading = answer.json()["interpretation"]
    assert reading["free_text"] is None and reading["unused"] == ["red", "umbrella"]
    assert reading["excluded"] == ["female"] and "keeps no CLIP text tower" in reading["note"]
