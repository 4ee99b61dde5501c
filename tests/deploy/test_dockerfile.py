"""The Dockerfile: lint-clean, and built the way docker-compose.yml and the README rely on."""

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined. No Dockerfile parser ships with the
    project's dependencies, and this file's instructions are plain enough for a line join."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical.splitlines() if line.strip()]


def test_hadolint_passes(tool):
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_runs_python_3_11():
    base = next(args for keyword, args in instructions() if keyword == "FROM")
    assert base.startswith("python:3.11"), base


def test_dependencies_install_in_a_layer_before_the_code():
    steps = instructions()
    install = next(
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "-r /tmp/requirements.txt" in args
    )
    copied_before = [args for keyword, args in steps[:install] if keyword in ("COPY", "ADD")]
    copied_after = " ".join(args for keyword, args in steps[install:] if keyword == "COPY")
    assert copied_before == ["pyproject.toml ./"], "only pyproject.toml may feed the dependency layer"
    for package in ("model", "app"):
        assert package in copied_after


def test_server_runs_as_a_fixed_non_root_user():
    user = [args for keyword, args in instructions() if keyword == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user


def test_weights_and_compiled_kernels_are_cached_under_the_cache_volume():
    """A new container reuses the weights, inductor's and Triton's kernels and TensorRT's engines: compiling them
    again takes minutes at every start."""
    env = " ".join(args for keyword, args in instructions() if keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    for variable in (
        "HF_HOME",
        "HF_HUB_CACHE",
        "TORCH_HOME",
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
        "VTFPAR_ONNX_TENSORRT_CACHE_DIR",
    ):
        assert re.search(rf"\b{variable}=/cache/", env), f"{variable} is not under /cache"


def test_the_image_has_the_c_compiler_triton_needs_and_the_scene_extra():
    """torch.compile is on by default with CUDA, and Triton builds a C launcher at first use: without a compiler,
    warm-up fails and the container restarts for ever. The scene extra brings HOG and the tracker."""
    runs = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    assert re.search(r"apt-get install [^&]*\bgcc\b", runs) and "libc6-dev" in runs
    assert "['optional-dependencies']['scene']" in runs and "opencv-python-headless" in runs


def test_the_driver_mounts_what_cuda_and_nvdec_need():
    env = " ".join(args for keyword, args in instructions() if keyword == "ENV")
    capabilities = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", env)
    assert capabilities and {"compute", "utility", "video"} <= set(capabilities[1].split(","))


def test_healthcheck_probes_readiness_without_curl_and_waits_out_a_cold_compile():
    healthcheck = next(args for keyword, args in instructions() if keyword == "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"] and "/health/ready" in command[2]
    start_period = re.search(r"--start-period=(\d+)s", healthcheck)
    assert start_period and int(start_period[1]) >= 600


def test_server_starts_in_exec_form_so_sigterm_reaches_it():
    command = [args for keyword, args in instructions() if keyword in ("CMD", "ENTRYPOINT")][-1]
    assert json.loads(command) == ["python", "-m", "app"]
