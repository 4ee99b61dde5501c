"""docker-compose.yml and its CPU override: valid for Compose, and wired the way a GPU host needs."""

import json
import re
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (a huggingface_hub dependency) is needed to read compose files")

REPO = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    """Reads Compose's `!reset` tag (Compose 2.24+), which the CPU override uses to drop the GPU request."""


RESET = object()
ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)


def load(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=ComposeLoader)


def merge(base: dict, override: dict) -> dict:
    """Compose's override rules for what the CPU file uses: mappings merge key by key and `!reset` removes a
    key. Hand-rolled because the only Compose here (Debian's 1.29) predates `!reset`."""
    merged = dict(base)
    for key, value in override.items():
        if value is RESET:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def cpu_compose(compose) -> dict:
    return merge(compose, load("docker-compose.cpu.yml"))


def seconds(duration: str) -> float:
    """A Compose duration such as 1m30s or 20s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unparsed duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def docker_compose_config(docker_compose: str, compose_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_compose, "--project-directory", str(REPO), "-f", str(compose_file), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_validates_the_gpu_file(tool):
    result = docker_compose_config(tool("docker-compose"), REPO / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_docker_compose_validates_the_cpu_mode(tool, cpu_compose, tmp_path):
    merged = tmp_path / "docker-compose.cpu-merged.yml"
    merged.write_text(yaml.safe_dump(cpu_compose))
    result = docker_compose_config(tool("docker-compose"), merged)
    assert result.returncode == 0, result.stderr


def test_api_reserves_an_nvidia_gpu(compose):
    devices = compose["services"]["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] and device.get("driver") == "nvidia" for device in devices)
    assert compose["services"]["api"]["environment"]["VTFPAR_DEVICE"] == "cuda"


def test_cpu_mode_drops_the_gpu_request_and_runs_on_cpu(cpu_compose):
    api = cpu_compose["services"]["api"]
    assert "devices" not in api["deploy"]["resources"]["reservations"]
    assert api["environment"]["VTFPAR_DEVICE"] == "cpu"
    assert cpu_compose["services"].keys() == load("docker-compose.yml")["services"].keys()


def test_api_healthcheck_probes_readiness(compose):
    test = compose["services"]["api"]["healthcheck"]["test"]
    assert test[0] == "CMD" and "/health/ready" in " ".join(test)
    assert "curl" not in " ".join(test), "the image has no curl"


def test_the_healthcheck_waits_out_a_cold_compile_and_training_gets_shared_memory(compose):
    """Warm-up compiles every batch size on CUDA the first time (minutes); DataLoader workers and NCCL pass tensors
    through /dev/shm, 64 MB by default."""
    api = compose["services"]["api"]
    assert seconds(api["healthcheck"]["start_period"]) >= 600
    size = api["shm_size"].lower()
    assert size.endswith("gb") and float(size[:-2]) >= 2, size


def test_stop_grace_period_outlasts_the_drain(compose):
    api = compose["services"]["api"]
    drain = float(api["environment"]["VTFPAR_DRAIN_TIMEOUT_S"])
    assert seconds(api["stop_grace_period"]) >= drain + 5, "Docker would SIGKILL the server while it drains"


def test_models_are_read_only_and_weights_cache_is_a_named_volume(compose):
    volumes = compose["services"]["api"]["volumes"]
    assert any(volume.endswith(":/models:ro") for volume in volumes)
    cache = [volume for volume in volumes if volume.split(":")[1] == "/cache"]
    assert cache and cache[0].split(":")[0] in compose["volumes"], "the weights cache must outlive the container"


def test_prometheus_scrapes_the_api_metrics(compose):
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())["scrape_configs"]
    api_port = compose["services"]["api"]["ports"][0].split(":")[-1]
    targets = [
        (job.get("metrics_path", "/metrics"), target)
        for job in scrape
        for group in job["static_configs"]
        for target in group["targets"]
    ]
    assert ("/metrics", f"api:{api_port}") in targets


def test_grafana_provisioning_points_at_the_repo_files(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    for source in mounts:
        assert (REPO / source).is_dir(), source
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, name = home.rsplit("/", 1)
    source = {target: source for source, target in mounts.items()}[folder]
    dashboard = json.loads((REPO / source / name).read_text())
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {datasource["datasources"][0]["uid"]}


def test_the_api_stores_tracks_in_the_postgres_service_with_volumes(compose):
    api, postgres = compose["services"]["api"], compose["services"]["postgres"]
    url = api["environment"]["VTFPAR_DATABASE_URL"]
    user, database = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    assert re.fullmatch(rf"postgresql://{user}:[^@]+@postgres:5432/{database}", url), url
    assert (
        api["depends_on"]["postgres"]["condition"] == "service_healthy"
        and "pg_isready" in postgres["healthcheck"]["test"]
    )
    data_dir = api["environment"]["VTFPAR_DATA_DIR"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in api["volumes"]}
    assert mounts[data_dir] in compose["volumes"], "thumbnails must outlive the container"
    database_volume = postgres["volumes"][0].split(":")
    assert database_volume[1] == "/var/lib/postgresql/data" and database_volume[0] in compose["volumes"]
    assert "ports" not in postgres, "the database is reached on the compose network only"
