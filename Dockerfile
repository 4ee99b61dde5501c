# VTFPAR++ inference service for a CUDA host (docker-compose.yml runs it; docker-compose.cpu.yml without a GPU).
#
# Base: python:3.11-slim rather than nvidia/cuda:*-cudnn-runtime. The PyPI torch/torchvision wheels pinned in
# pyproject.toml are CUDA builds that bring the CUDA runtime, cuDNN and cuBLAS as pip (nvidia-*) wheels, and
# the PyAV wheel bundles FFmpeg; the only GPU piece that must come from outside is the driver, which the
# NVIDIA Container Toolkit mounts in at run time. A CUDA runtime base would add a second copy of the same
# libraries (gigabytes), and its Ubuntu Python is 3.10 or 3.12 where the project needs 3.11.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Unless an image asks for more, the NVIDIA Container Toolkit mounts only the "utility" driver libraries;
# CUDA needs "compute".
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Weights caches live on the /cache volume. huggingface_hub reads these at import time, so they are set here,
# not in code; HF_HUB_OFFLINE makes a missing weight fail at once instead of reaching for a hub.
ENV HF_HOME=/cache/huggingface \
    HF_HUB_CACHE=/cache/huggingface/hub \
    HF_HUB_OFFLINE=1 \
    TORCH_HOME=/cache/torch

# A server in a container listens on all interfaces; compose decides what is published.
ENV VTFPAR_HOST=0.0.0.0 \
    VTFPAR_PORT=8000 \
    VTFPAR_DATA_DIR=/data

# A fixed uid, so files on bind-mounted /models and the cache volume can be granted to it on the host. /data: the
# track store's files (thumbnails; the SQLite database when no PostgreSQL is configured), a volume in compose.
RUN groupadd --system --gid 10001 vtfpar \
    && useradd --system --uid 10001 --gid vtfpar --home-dir /home/vtfpar --create-home vtfpar \
    && mkdir -p /models /cache/huggingface/hub /cache/torch /data \
    && chown -R vtfpar:vtfpar /cache /data

WORKDIR /opt/vtfpar

# Dependencies get their own layer, keyed on pyproject.toml alone: editing the code does not reinstall torch.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY model ./model
COPY app ./app
COPY training ./training
COPY vtfpar ./vtfpar
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

USER 10001:10001
# Run from the home directory so `python -m app` imports the installed package, not the source copy.
WORKDIR /home/vtfpar
EXPOSE 8000

# Ready means loaded, warmed and not draining; urllib because the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('VTFPAR_PORT', '8000'), timeout=4)"]

# Exec form: the server is PID 1 and receives SIGTERM itself, so it drains in-flight requests before exiting.
# CMD rather than ENTRYPOINT, so `docker compose run api vtfpar evaluate ...` runs the other commands.
CMD ["python", "-m", "app"]
