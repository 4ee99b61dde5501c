"""The console's alerts in headless Chromium: an alert fired by a stored upload is shown with its rule, camera and
thumbnail, and an operator's acknowledgement there is the API's."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import E2E_LIMITS
from ..harness import make_settings, serving
from .test_alerts_api import post, scene  # noqa: F401 (the scene fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.e2e]


def test_the_console_lists_alerts_with_thumbnails_and_acknowledges_them(browser, tiny_checkpoint, scene, tmp_path):  # noqa: F811
    settings = make_settings(tiny_checkpoint, **E2E_LIMITS, data_dir=tmp_path / "data")
    with serving(settings) as server:
        assert httpx.post(f"{server.url}/rules", json={"name": "gate", "search": {}}).status_code == 201
        tracks = post(server.url, scene, store="true", camera="gate-3").json()["tracks"]
        page = browser.new_page()
        page.goto(f"{server.url}/ui/")
        page.wait_for_function(f"document.querySelectorAll('#alerts .alert').length === {len(tracks)}")
        page.wait_for_function("() => [...document.querySelectorAll('#alerts .alert img')].every(i => i.naturalWidth)")
        assert "gate · gate-3" in page.inner_text("#alerts")
        newest = page.eval_on_selector("#alerts .alert", "card => card.dataset.id")
        page.click("#alerts .alert button")
        page.wait_for_selector(f"#alerts .alert.acknowledged[data-id='{newest}']")
        page.close()
        listed = httpx.get(f"{server.url}/alerts").json()["alerts"]
    assert [a["acknowledged_at"] is not None for a in listed] == [True] + [False] * (len(listed) - 1)
