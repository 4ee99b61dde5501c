"""The web console (/ui, where / leads) in headless Chromium (Debian's, driven by Playwright): it shows the stored
tracks with their thumbnails, a search returns the tracks in the API's ranked order, a chip's click searches, a
service without streams says so, and a service with a token asks for it once (a cancelled login leaves nothing
waiting)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from benchmarks.media import encode
from training.synthetic.scenes import make_scene, write_mot

from ..conftest import E2E_LIMITS
from ..harness import make_settings, serving

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
TOKEN = "console-token"


def store_scene(
    url: str, tmp_path, camera="gate-3", start=datetime(2026, 3, 1, 14, tzinfo=UTC), headers: dict | None = None
) -> list[int]:
    made = make_scene(seed=8, walkers=3, num_frames=20, size=(96, 160))
    write_mot(made.boxes, tmp_path / "gt.txt")
    files = {
        "video": ("scene.mp4", encode("mp4", made.frames)),
        "tracks": ("gt.txt", (tmp_path / "gt.txt").read_bytes()),
    }
    params = {"store": "true", "camera": camera, "start": start.isoformat()}
    answer = httpx.post(f"{url}/predict/tracks", files=files, params=params, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["stored"]


def shown_ids(page) -> list[int]:
    return [int(i) for i in page.eval_on_selector_all("#tracks .track", "cards => cards.map(c => c.dataset.id)")]


def thumbnails_loaded(page) -> bool:
    return page.eval_on_selector_all(
        "#tracks .track img", "images => images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0)"
    )


def test_the_console_shows_stored_tracks_and_ranked_search_results(browser, tiny_checkpoint, tmp_path):
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, data_dir=tmp_path / "data")
    with serving(settings) as server:
        stored = store_scene(server.url, tmp_path)
        front = httpx.get(f"{server.url}/")
        assert front.status_code == 307 and front.headers["location"] == "/ui/"
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_function(f"document.querySelectorAll('#tracks .track').length === {len(stored)}")
        assert sorted(shown_ids(page)) == sorted(stored)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#tracks .track img')].every(i => i.naturalWidth > 0)"
        )
        assert thumbnails_loaded(page)
        assert "No streams" in page.inner_text("#streams")

        sentence = "a person with no hat, tall"
        ranked = httpx.get(f"{server.url}/tracks", params={"q": sentence, "limit": 24}).json()
        page.fill("#sentence", sentence)
        page.click("#search-button")
        page.wait_for_function("document.querySelector('#tracks-title').textContent.startsWith('Search results')")
        page.wait_for_function(f"document.querySelectorAll('#tracks .track').length === {len(ranked['tracks'])}")
        assert shown_ids(page) == [t["id"] for t in ranked["tracks"]]
        assert "excluded: hat" in page.inner_text("#interpretation") and "tall" in page.inner_text("#interpretation")
        assert "keeps no CLIP text tower" in page.inner_text("#interpretation")  # why "tall" was not read as text
        scores = page.eval_on_selector_all("#tracks .track .score", "s => s.map(e => parseFloat(e.textContent))")
        assert scores == sorted(scores, reverse=True)

        page.click("#clear-button")
        page.wait_for_function("document.querySelector('#tracks-title').textContent === 'Most recent tracks'")
        page.click("summary")
        page.click("#chips .chip >> text=backpack")  # one click searches
        page.wait_for_function("document.querySelector('#interpretation').textContent.startsWith('required: backpack')")
        ranked = httpx.get(f"{server.url}/tracks", params={"attributes": "backpack", "limit": 24}).json()
        page.wait_for_function(f"document.querySelectorAll('#tracks .track').length === {len(ranked['tracks'])}")
        assert shown_ids(page) == [t["id"] for t in ranked["tracks"]]
        page.close()


def test_the_console_asks_for_the_token_when_the_service_has_one(browser, tiny_checkpoint, tmp_path):
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, data_dir=tmp_path / "data", api_token=TOKEN)
    with serving(settings) as server:
        stored = store_scene(server.url, tmp_path, headers={"Authorization": f"Bearer {TOKEN}"})
        page = browser.new_page()
        page.goto(f"{server.url}/ui/")
        page.wait_for_selector("#token-dialog[open]")
        assert shown_ids(page) == []
        page.click("#token-dialog button[value=cancel]")  # the calls that waited fail, none hangs
        page.wait_for_function("document.querySelector('#search-error').textContent.includes('needs the API token')")
        assert "need the API token" in page.inner_text("#streams")
        page.click("#token-button")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        page.wait_for_function(f"document.querySelectorAll('#tracks .track').length === {len(stored)}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#tracks .track img')].every(i => i.naturalWidth > 0)"
        )
        assert thumbnails_loaded(page)
        page.close()


def test_find_similar_shows_the_answer_as_a_timeline_across_cameras(browser, tiny_checkpoint, tmp_path):
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, data_dir=tmp_path / "data")
    with serving(settings) as server:
        gate = store_scene(server.url, tmp_path)
        hall = store_scene(server.url, tmp_path, camera="hall", start=datetime(2026, 3, 1, 15, tzinfo=UTC))
        page = browser.new_page()
        page.goto(f"{server.url}/ui/")
        page.wait_for_function(f"document.querySelectorAll('#tracks .track .find-similar').length === {len(gate) * 2}")
        page.click(f"#tracks .track[data-id='{gate[0]}'] .find-similar")
        page.wait_for_selector("#similar-timeline .timeline-row")
        answer = httpx.get(f"{server.url}/tracks/{gate[0]}/similar", params={"limit": 24}).json()
        rows = page.eval_on_selector_all("#similar-timeline .timeline-row", "rows => rows.map(r => r.dataset.camera)")
        assert rows == ["gate-3", "hall"]  # the order the cameras saw the people
        shown = page.eval_on_selector_all("#similar-timeline .track", "cards => cards.map(c => +c.dataset.id)")
        assert sorted(shown) == sorted(t["id"] for t in answer["tracks"]) and gate[0] not in shown
        hall_row = page.eval_on_selector_all(
            "#similar-timeline .timeline-row[data-camera='hall'] .track", "cards => cards.map(c => +c.dataset.id)"
        )
        assert sorted(hall_row) == sorted(hall)
        assert "not a pretrained one" in page.inner_text("#similar-note")
        page.close()
