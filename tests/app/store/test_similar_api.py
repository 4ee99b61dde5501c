"""Appearance search over HTTP against a real server: a scene stored by two cameras, each walker's sighting in the
other camera comes first (the same crops give the same embedding); filters, paging, the token and bad input."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from PIL import Image

from benchmarks.media import encode
from training.synthetic.scenes import make_scene, write_mot

from .tokened import auth, tokened_server

pytestmark = pytest.mark.e2e
START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with tokened_server(tiny_checkpoint, data) as running:
        yield running


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=5, walkers=3, num_frames=24, size=(96, 160))


@pytest.fixture(scope="module")
def stored(server, scene, tmp_path_factory):
    """One scene of three walkers, stored as camera gate-3 at START and as camera hall an hour later."""
    made = scene
    folder = tmp_path_factory.mktemp("scene")
    write_mot(made.boxes, folder / "gt.txt")
    files = {"video": ("scene.mp4", encode("mp4", made.frames)), "tracks": ("gt.txt", (folder / "gt.txt").read_bytes())}
    answers = []
    for camera, start in [("gate-3", START), ("hall", START + timedelta(hours=1))]:
        params = {"store": "true", "camera": camera, "start": start.isoformat()}
        answer = httpx.post(f"{server.url}/predict/tracks", files=files, **{**auth(**params), "timeout": 60})
        assert answer.status_code == 200, answer.text
        answers.append(answer.json()["stored"])
    return answers


def test_each_walker_is_found_again_in_the_other_camera_first(server, stored):
    gate, hall = stored
    assert len(gate) == len(hall) == 3
    for at_gate, in_hall in zip(gate, hall, strict=True):
        answer = httpx.get(f"{server.url}/tracks/{at_gate}/similar", **auth())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found = body["tracks"]
        assert found[0]["id"] == in_hall and found[0]["camera"] == "hall"
        assert found[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert at_gate not in [track["id"] for track in found] and len(found) == 5
        assert [t["score"] for t in found] == sorted((t["score"] for t in found), reverse=True)
        assert body["track"] == at_gate and body["pretrained_tower"] is False  # the tiny tower is random


def test_filters_and_paging(server, stored):
    gate, hall = stored
    url = f"{server.url}/tracks/{gate[0]}/similar"
    only_gate = httpx.get(url, **auth(camera="gate-3")).json()["tracks"]
    assert sorted(t["id"] for t in only_gate) == sorted(gate[1:])
    later = httpx.get(url, **auth(since=(START + timedelta(minutes=30)).isoformat())).json()["tracks"]
    assert sorted(t["id"] for t in later) == sorted(hall)
    first = httpx.get(url, **auth(limit=2)).json()
    rest = httpx.get(url, **auth(limit=2, cursor=first["next_cursor"])).json()
    whole = httpx.get(url, **auth()).json()["tracks"]
    assert [t["id"] for t in first["tracks"] + rest["tracks"]] == [t["id"] for t in whole][:4]


def test_the_token_and_bad_input(server, stored):
    gate, _ = stored
    url = f"{server.url}/tracks/{gate[0]}/similar"
    assert httpx.get(url, timeout=30).status_code == 401
    missing = httpx.get(f"{server.url}/tracks/999999/similar", **auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for params, code in [({"cursor": "nonsense"}, "bad_search"), ({"since": "yesterday"}, "bad_time")]:
        answer = httpx.get(url, **auth(**params))
        assert answer.status_code == 422 and answer.json()["error"]["code"] == code, answer.text


def crops(scene, track_id: int) -> list[tuple[str, bytes, str]]:
    pictures = []
    for number, box in enumerate(scene.track(track_id)[::3]):
        left, top = max(0, int(box.left)), max(0, int(box.top))
        crop = scene.frames[box.frame][top : int(box.top + box.height), left : int(box.left + box.width)]
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="PNG")
        pictures.append(("frames", (f"{number}.png", buffer.getvalue(), "image/png")))
    return pictures


def test_an_uploaded_person_is_searched_for_among_the_stored_tracks(server, stored, scene):
    gate, hall = stored
    walker = scene.boxes[0].track_id
    url = f"{server.url}/tracks/similar/upload"
    found = httpx.post(url, files=crops(scene, walker), **auth(limit=24)).json()
    tracks = found["tracks"]
    assert found["track"] is None and found["next_cursor"] is None and len(tracks) == 6
    assert [t["score"] for t in tracks] == sorted((t["score"] for t in tracks), reverse=True)
    # The same walker stored by both cameras: the same crops, the same embedding, the same score.
    by_walker = {}
    for track in tracks:
        by_walker.setdefault(track["track_id"], []).append(track["score"])
    assert all(len(scores) == 2 and scores[0] == pytest.approx(scores[1], abs=1e-5) for scores in by_walker.values())
    hall_only = httpx.post(
        f"{server.url}/tracks/similar/upload", files=crops(scene, walker), **auth(camera="hall")
    ).json()
    assert sorted(t["id"] for t in hall_only["tracks"]) == sorted(hall)
    refused = httpx.post(url, files=crops(scene, walker), timeout=30)
    assert refused.status_code == 401


def test_erased_tracks_are_no_longer_found(server, stored):
    gate, hall = stored
    erased = httpx.delete(f"{server.url}/tracks", **auth(camera="hall"))
    assert erased.status_code == 200 and erased.json()["deleted"] == 3
    found = httpx.get(f"{server.url}/tracks/{gate[0]}/similar", **auth()).json()["tracks"]
    assert sorted(t["id"] for t in found) == sorted(gate[1:])
