"""Live streams on Ray, end to end: the application on a local Ray instance started by this module, two cameras
(GStreamer's RTSP server, one each), one opened by the streams file at start and one through Serve's HTTP proxy,
their events, a rule firing on a live track, their stored tracks, an ingress replica's and a camera actor's
restart, and DELETE.

The camera actors get the tests' ground-truth detector (HOG cannot see the synthetic walkers), which is why this
module builds the application in this process (``app.ray.app.application``) instead of ``python -m app.ray``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from benchmarks.alert_receivers import Receiver
from benchmarks.servers import free_port

from ..conftest import E2E_LIMITS
from ..streams import EventsReader, IndexedDetector, RtspCamera, make_camera

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.ray, pytest.mark.rtsp]

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install -e '.[ray]')")
pytest.importorskip("trackers", reason="the 'scene' extra (pip install -e '.[scene]') is not installed")

from ray import serve  # noqa: E402

from app.ray.app import AppOptions, application  # noqa: E402
from app.ray.camera import actor_name  # noqa: E402

ROOT = Path(__file__).parents[3]
START_TIMEOUT_S = 300  # a cold Ray instance and its replicas importing torch, on two busy cores
NAMES = ("gate-1", "gate-2")


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.25)
    return value


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


class Site:
    def __init__(self, url: str, cameras: list[RtspCamera], receiver: Receiver) -> None:
        self.url, self.cameras, self.receiver = url, cameras, receiver
        self.ids: dict[str, str] = {}  # name -> stream id
        self.readers: dict[str, EventsReader] = {}

    def status(self, name: str) -> dict:
        response = httpx.get(f"{self.url}/streams/{self.ids[name]}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-streams")
    recording = make_camera(folder)
    cameras = [RtspCamera(recording.path, folder / f"rtsp-{name}.log") for name in NAMES]
    receiver = Receiver().start()
    streams_file = folder / "streams.json"  # the site's cameras at start: gate-2; gate-1 comes through the API
    streams_file.write_text(json.dumps([{"name": NAMES[1], "url": cameras[1].url}]))
    ray_tmp = tempfile.mkdtemp(prefix="vtfpar-ray-")  # short: Ray's unix sockets live there
    settings = Settings(
        device="cpu",
        decode_workers=1,
        decode_threads=1,
        drain_timeout_s=5,
        log_json=False,
        data_dir=folder / "data",
        stream_sources=tuple(f"rtsp://127.0.0.1:{camera.port}/" for camera in cameras),
        stream_update_s=1.0,
        stream_track_lost_s=0.5,
        stream_detection_interval=2,
        stream_read_timeout_s=2,
        stream_retry_max_s=1,
        min_frames=1,
        webhook_targets=(f"http://127.0.0.1:{receiver.port}/hooks/",),
        streams_file=streams_file,
        **E2E_LIMITS,
    )
    options = AppOptions(ingress_replicas="2", ingress_cpus=0.25, model_cpus=0.25, camera_cpus=0.25)
    port = free_port()
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=ray_tmp,
        runtime_env={"env_vars": {"PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1"}},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(options, settings, IndexedDetector(recording)), name="vtfpar", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: (r := _get(f"{url}/health/ready")) is not None and r.status_code == 200, START_TIMEOUT_S, "ready")
        yield Site(url, cameras, receiver)
    finally:
        serve.shutdown()
        ray.shutdown()
        receiver.stop()
        for camera in cameras:
            camera.stop()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_streams_files_camera_and_one_opened_through_the_ingress_run_in_their_actors(site):
    [from_file] = httpx.get(f"{site.url}/streams", timeout=30).json()["streams"]
    assert (from_file["name"], from_file["url"]) == (NAMES[1], site.cameras[1].url)
    site.ids[NAMES[1]] = from_file["id"]
    response = httpx.post(f"{site.url}/streams", json={"name": NAMES[0], "url": site.cameras[0].url}, timeout=30)
    assert response.status_code == 201, response.text
    site.ids[NAMES[0]] = response.json()["id"]
    for name in NAMES:
        site.readers[name] = EventsReader(f"{site.url}/streams/{site.ids[name]}/events")
    for name in NAMES:
        ray.get_actor(actor_name(site.ids[name]))  # raises if there is no such actor
        _wait(lambda name=name: site.status(name)["state"] == "running", 120, f"{name} running")
    refused = httpx.post(f"{site.url}/streams", json={"name": "x", "url": "rtsp://10.0.0.7/cam"}, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "source_not_allowed"


def test_events_with_attributes_come_from_both_cameras(site):
    for name in NAMES:
        reader = site.readers[name]
        updates = _wait(lambda reader=reader: reader.of("track_update"), 120, f"{name}'s track updates")
        assert {data["stream"] for data in updates} == {site.ids[name]}
        assert all(data["stream_name"] == name and data["attributes"] for data in updates)


def test_a_rule_fires_on_a_camera_actors_live_track_and_an_ingress_replica_delivers_it(site):
    rule = {"name": "anyone at gate 1", "search": {"camera": "gate-1"}, "webhook": site.receiver.url}
    created = httpx.post(f"{site.url}/rules", json=rule, timeout=30)
    assert created.status_code == 201, created.text
    site.receiver.secret = created.json()["secret"]
    # The camera actor sees the rule within its 2 s reload; a track seen from then on fires when it has settled.
    _wait(lambda: site.receiver.received, 90, "a webhook from a live track on Ray")
    _, alert, valid = site.receiver.received[0]
    assert valid and alert["rule"]["id"] == created.json()["id"] and alert["camera"] == "gate-1"
    assert alert["track"]["source"] == "stream" and alert["track"]["stream"] == site.ids["gate-1"]
    listed = httpx.get(f"{site.url}/alerts", timeout=10).json()["alerts"]
    assert alert["id"] in {a["id"] for a in listed}


def test_a_killed_camera_actor_comes_back_running_with_a_reconnect_and_its_events_go_on(site):
    reader = site.readers["gate-1"]
    ray.kill(ray.get_actor(actor_name(site.ids["gate-1"])), no_restart=False)
    killed_at = len(reader.events)
    _wait(
        lambda: (s := site.status("gate-1"))["state"] == "running" and s["reconnects"] >= 1,
        60,
        "gate-1 running again with a reconnect",
    )
    assert site.status("gate-2")["state"] == "running"  # the other camera went on
    _wait(lambda: any(kind == "track_update" for kind, _ in reader.events[killed_at:]), 60, "gate-1's events again")
    assert not reader.closed.is_set()


def test_metrics_show_each_cameras_series(site):
    def counting() -> set[tuple[str | None, str | None]]:
        return {
            (sample.labels.get("deployment"), sample.labels.get("stream"))
            for family in text_string_to_metric_families(httpx.get(f"{site.url}/metrics", timeout=10).text)
            for sample in family.samples
            if sample.name == "vtfpar_stream_frames_in_total" and sample.value > 0
        }

    expected = {("Camera", stream_id) for stream_id in site.ids.values()}
    # A restarted camera actor's first report waits for its handle to the Coordinator: a few seconds at most.
    _wait(lambda: expected <= counting(), 30, "both cameras' series")


def _stored(site: Site, name: str) -> list[dict]:
    response = httpx.get(f"{site.url}/tracks", params={"camera": name}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["tracks"]


def test_delete_ends_the_actor_and_its_open_tracks_which_are_stored_once(site):
    reader = site.readers["gate-2"]
    assert httpx.delete(f"{site.url}/streams/{site.ids['gate-2']}", timeout=60).status_code == 204
    assert httpx.get(f"{site.url}/streams/{site.ids['gate-2']}", timeout=10).status_code == 404
    with pytest.raises(ValueError):
        ray.get_actor(actor_name(site.ids["gate-2"]))
    assert _wait(reader.closed.is_set, 15, "gate-2's events to close")
    ended = reader.of("track_end")
    # Every track the camera followed ended, with the tracks still open at DELETE (gate-2 never restarted: its
    # track ids are unique).
    assert {data["track_id"] for data in reader.of("track_update")} <= {data["track_id"] for data in ended}
    with_attributes = {data["track_id"] for data in ended if data["windows"]}
    stored = _wait(lambda: len(_stored(site, "gate-2")) >= len(with_attributes) and _stored(site, "gate-2"), 30, "")
    assert sorted(track["track_id"] for track in stored) == sorted(with_attributes)  # each once


def test_streams_ids_and_settings_outlive_every_ingress_replica(site):
    before = httpx.get(f"{site.url}/streams", timeout=10).json()["streams"]
    assert [s["id"] for s in before] == [site.ids["gate-1"]]
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "#Ingress#" in a["name"]]
    assert len(replicas) == 2, replicas
    for replica in replicas:
        ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=False)

    def listed_again():
        response = _get(f"{site.url}/streams")
        return response is not None and response.status_code == 200 and response.json()["streams"]

    [after] = _wait(listed_again, START_TIMEOUT_S, "a new ingress replica")
    for key in ("id", "name", "url", "detection_interval", "update_s", "created_at"):
        assert after[key] == before[0][key]
    assert after["state"] in ("running", "reconnecting")  # the RTSP server hangs up at its file's end
    assert httpx.delete(f"{site.url}/streams/{site.ids['gate-1']}", timeout=60).status_code == 204
    assert _wait(lambda: _stored(site, "gate-1"), 30, "gate-1's stored tracks")
