"""deploy/ray/: the Serve config as Ray reads it, the RayService serving the same applications, the image and the
scrape config as their tools read them. (tests/app/ray serves the application itself.)"""

import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RAY = REPO / "deploy" / "ray"


def test_the_serve_config_is_one_ray_accepts_with_options_the_builder_accepts():
    pytest.importorskip("ray.serve", reason="the [ray] extra is not installed (pip install -e '.[ray]')")
    from ray.serve.schema import ServeDeploySchema

    from app.ray.app import AppOptions

    config = ServeDeploySchema.model_validate(yaml.safe_load((RAY / "serve.yaml").read_text()))
    [application] = config.applications
    assert application.import_path == "app.ray.app:build_app"
    options = AppOptions.model_validate(application.args)
    assert options.model_gpus > 0 and ":" in options.model_replicas  # a GPU deployment that autoscales


def test_the_rayservice_serves_the_applications_of_the_serve_config():
    service = yaml.safe_load((RAY / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    served = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    assert served == yaml.safe_load((RAY / "serve.yaml").read_text())["applications"]
    images = {
        container["image"]
        for group in [service["spec"]["rayClusterConfig"]["headGroupSpec"]]
        + service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        for container in group["template"]["spec"]["containers"]
    }
    assert images == {"vtfpar-serve-ray:latest"}


def test_hadolint_passes_on_the_ray_image(tool):
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "deploy/ray/Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_ray_scrape_config(tool):
    result = subprocess.run(
        [tool("promtool"), "check", "config", "deploy/ray/prometheus.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
