"""The console runs a camera site, in headless Chromium (Debian's, driven by Playwright) against GStreamer's RTSP
server as the camera: log in, add a camera from the page (and see the allow-list's refusal in the API's words), its
card appears with a live picture that changes and the people on it now; the page holds one connection per camera
at most, none once the card is removed. The slow one: four cameras for a minute while searches answer."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import pytest

from app.streams.preview import MAX_VIEWERS

from .conftest import E2E_LIMITS
from .harness import make_settings, serving
from .streams import IndexedDetector, RtspCamera, make_camera

pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")
TOKEN = "camera-site-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STREAM_SETTINGS = dict(stream_update_s=1.0, stream_track_lost_s=0.5, stream_detection_interval=2, min_frames=1)
FIRST_CARD_S = 20
HELD_S = 1.5  # a request in flight longer than this holds its connection (a snapshot takes milliseconds)
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.rtsp]


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    return make_camera(tmp_path_factory.mktemp("camera"), seconds=30)


@pytest.fixture(scope="module")
def rtsp(camera, tmp_path_factory):
    server = RtspCamera(camera.path, tmp_path_factory.mktemp("rtsp") / "rtsp.log")
    yield server
    server.stop()


@dataclass
class Network:
    """The page's requests in flight, from Chromium's network events."""

    started: dict = field(default_factory=dict)  # request -> monotonic start

    def watch(self, page) -> None:
        page.on("request", lambda request: self.started.__setitem__(request, time.monotonic()))
        page.on("requestfinished", lambda request: self.started.pop(request, None))
        page.on("requestfailed", lambda request: self.started.pop(request, None))

    def per_camera(self, held_only: bool) -> dict[str, int]:
        now, counts = time.monotonic(), defaultdict(int)
        for request, since in list(self.started.items()):
            found = re.search(r"/streams/([^/?]+)/", request.url)
            if found and (not held_only or now - since > HELD_S):
                counts[found.group(1)] += 1
        return dict(counts)

    def sample(self, page, seconds: float) -> tuple[dict[str, int], dict[str, int], int]:
        """Over ``seconds``: the most requests in flight per camera, the most held per camera, the most in flight
        on the whole page."""
        most: dict[str, int] = defaultdict(int)
        most_held: dict[str, int] = defaultdict(int)
        page_most = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            page.wait_for_timeout(100)  # lets Playwright deliver the network events
            for camera, count in self.per_camera(False).items():
                most[camera] = max(most[camera], count)
            for camera, count in self.per_camera(True).items():
                most_held[camera] = max(most_held[camera], count)
            page_most = max(page_most, len(self.started))
        return dict(most), dict(most_held), page_most


def log_in(page, url: str) -> None:
    page.goto(f"{url}/ui/")
    page.wait_for_selector("#token-dialog[open]")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")


def add_camera(page, name: str, url: str) -> None:
    page.fill("#camera-name", name)
    page.fill("#camera-url", url)
    page.click("#camera-add")


def assert_viewers_capped(url: str) -> None:
    """MAX_VIEWERS MJPEG viewers of one stream are served; the next gets 429 too_many_viewers."""
    with contextlib.ExitStack() as viewers:
        reading = []  # kept: a reader dropped would close its connection
        for _ in range(MAX_VIEWERS):
            response = viewers.enter_context(httpx.stream("GET", url, headers=AUTH, timeout=20))
            assert response.status_code == 200
            reading.append(response.iter_bytes())
            next(reading[-1])  # its first picture: the viewer is counted
        # Streamed, so that a preview answered by mistake fails the test instead of running forever.
        with httpx.stream("GET", url, headers=AUTH, timeout=20) as refused:
            assert refused.status_code == 429
            assert json.loads(refused.read())["error"]["code"] == "too_many_viewers"


PICTURE_SUM = """id => {
  const img = document.querySelector(`.stream[data-id="${id}"] img`);
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  return context.getImageData(0, 0, canvas.width, canvas.height).data.reduce((a, b) => (a * 31 + b) % 1000000007, 0);
}"""


def test_a_camera_added_from_the_console_shows_its_picture_and_people_and_goes_away(
    browser, camera, rtsp, tiny_checkpoint, tmp_path
):
    settings = make_settings(
        tiny_checkpoint,
        **E2E_LIMITS,
        **STREAM_SETTINGS,
        stream_sources=(f"rtsp://127.0.0.1:{rtsp.port}/",),
        data_dir=tmp_path / "data",
        api_token=TOKEN,
    )
    with serving(settings, detector=IndexedDetector(camera)) as server:
        page = browser.new_page()
        network = Network()
        network.watch(page)
        log_in(page, server.url)
        page.wait_for_function("document.querySelector('#streams').textContent.includes('No streams yet')")

        outside = "rtsp://10.9.9.9/cam"
        refusal = httpx.post(f"{server.url}/streams", json={"name": "x", "url": outside}, headers=AUTH).json()
        add_camera(page, "elsewhere", outside)
        page.wait_for_function("document.querySelector('#camera-error').textContent.length > 0")
        assert page.inner_text("#camera-error") == f"source_not_allowed: {refusal['error']['message']}"

        clicked = time.monotonic()
        add_camera(page, "gate-3", rtsp.url)
        page.wait_for_selector(".stream[data-id]")
        stream_id = page.get_attribute(".stream[data-id]", "data-id")
        page.wait_for_function(f"({PICTURE_SUM})('{stream_id}') !== null", timeout=FIRST_CARD_S * 1000)
        first_picture_s = time.monotonic() - clicked
        first = page.evaluate(PICTURE_SUM, stream_id)
        page.wait_for_function(f"({PICTURE_SUM})('{stream_id}') !== {first}", timeout=10_000)
        page.wait_for_selector(f'.stream[data-id="{stream_id}"] .people li', timeout=20_000)
        person = page.inner_text(f'.stream[data-id="{stream_id}"] .people li')
        assert re.fullmatch(r"#\d+: .+", person), person
        assert page.inner_text(f'.stream[data-id="{stream_id}"] dd.state') == "running"

        most, held, page_most = network.sample(page, 6)
        print(
            f"first picture {first_picture_s:.1f} s after 'Add'; in flight per camera {most}, held {held}, "
            f"page {page_most}"
        )
        assert held.get(stream_id, 0) <= 1 and most.get(stream_id, 0) <= 2, (most, held)
        assert page_most < 6, "Chromium's six connections per host would be taken"

        snapshot = httpx.get(f"{server.url}/streams/{stream_id}/snapshot", headers=AUTH)
        assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
        assert_viewers_capped(f"{server.url}/streams/{stream_id}/preview")

        page.click(f'.stream[data-id="{stream_id}"] button.remove')
        page.wait_for_function("document.querySelector('#streams').textContent.includes('No streams yet')")
        assert httpx.get(f"{server.url}/streams", headers=AUTH).json()["streams"] == []
        page.wait_for_timeout(1000)
        assert stream_id not in network.per_camera(False), "a request of the removed camera is still open"
        page.close()


@pytest.mark.slow
def test_a_search_answers_while_four_cameras_run_for_a_minute(browser, camera, rtsp, tiny_checkpoint, tmp_path):
    settings = make_settings(
        tiny_checkpoint,
        **{**E2E_LIMITS, "max_queue": 256},
        **{**STREAM_SETTINGS, "stream_detection_interval": 3},
        stream_sources=(f"rtsp://127.0.0.1:{rtsp.port}/",),
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        torch_threads=1,
    )
    with serving(settings, detector=IndexedDetector(camera)) as server:
        page = browser.new_page()
        network = Network()
        network.watch(page)
        log_in(page, server.url)
        for number in range(4):
            answer = httpx.post(f"{server.url}/streams", json={"name": f"cam-{number}", "url": rtsp.url}, headers=AUTH)
            assert answer.status_code == 201, answer.text
        page.wait_for_function("document.querySelectorAll('.stream img[src^=\"blob:\"]').length === 4", timeout=30_000)
        started, searches, held_most, page_most = time.monotonic(), [], 0, 0
        while time.monotonic() - started < 60:
            asked = time.monotonic()
            page.fill("#sentence", "a person with no hat" if len(searches) % 2 else "a person carrying a backpack")
            page.click("#search-button")
            page.wait_for_function("document.querySelector('#tracks-title').textContent.startsWith('Search results')")
            page.wait_for_function("document.querySelector('#interpretation').textContent.length > 0")
            searches.append(time.monotonic() - asked)
            page.click("#clear-button")
            page.wait_for_function("document.querySelector('#tracks-title').textContent === 'Most recent tracks'")
            _, held, most = network.sample(page, 5)
            held_most, page_most = max([held_most, *held.values()]), max(page_most, most)
        statuses = httpx.get(f"{server.url}/streams", headers=AUTH).json()["streams"]
        print(
            f"searches answered in {[round(s, 2) for s in searches]} s; held per camera at most {held_most}, "
            f"page in flight at most {page_most}; states {[s['state'] for s in statuses]}"
        )
        assert len(searches) >= 4 and max(searches) < 10
        # One held connection per camera (its events); the rest of Chromium's six per host serve the pictures, the
        # status and the searches (page_most counts requests queued for a connection too).
        assert held_most <= 1
        assert len(page.query_selector_all(".stream")) == 4
        page.close()
