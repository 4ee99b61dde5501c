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

# Unless an image asks for more, the NVIDIA Container Toolkit mounts only the "utility" driver libraries; CUDA needs
# "compute", and NVDEC (VTFPAR_DECODE_DEVICE=cuda) the driver's decoder library, which only "video" mounts.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video

# Weights caches live on the /cache volume, and so do the compiled kernels (inductor's, Triton's and TensorRT's
# engines): a new container reuses them instead of compiling for minutes again. huggingface_hub reads these at
# import time, so they are set here, not in code; HF_HUB_OFFLINE makes a missing weight fail at once instead of
# reaching for a hub.
ENV HF_HOME=/cache/huggingface \
    HF_HUB_CACHE=/cache/huggingface/hub \
    HF_HUB_OFFLINE=1 \
    TORCH_HOME=/cache/torch \
    TORCHINDUCTOR_CACHE_DIR=/cache/inductor \
    TRITON_CACHE_DIR=/cache/triton \
    VTFPAR_ONNX_TENSORRT_CACHE_DIR=/cache/tensorrt

# A server in a container listens on all interfaces; compose decides what is published.
ENV VTFPAR_HOST=0.0.0.0 \
    VTFPAR_PORT=8000 \
    VTFPAR_DATA_DIR=/data

# A fixed uid, so files on bind-mounted /models and the cache volume can be granted to it on the host. /data: the
# track store's files (thumbnails; the SQLite database when no PostgreSQL is configured), a volume in compose.
RUN groupadd --system --gid 10001 vtfpar \
    && useradd --system --uid 10001 --gid vtfpar --home-dir /home/vtfpar --create-home vtfpar \
    && mkdir -p /models /cache/huggingface/hub /cache/torch /cache/inductor /cache/triton /cache/tensorrt /data \
    && chown -R vtfpar:vtfpar /cache /data

# torch.compile (on by default with CUDA) has Triton build a small C launcher at first use, against Python.h: without
# a C compiler warm-up fails and the process exits. gcc and libc6-dev add 180 MB to an image of several GB;
# turning inductor off instead would give up the compiled, CUDA-graph path the GPU defaults are sized for. Not
# pinned: bookworm's security updates replace libc6-dev's exact version, and a pin would break the build then.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vtfpar

# Dependencies get their own layer, keyed on pyproject.toml alone: editing the code does not reinstall torch. The
# `scene` extra is installed too: OpenCV (HOG, the default person detector) and the tracker behind /predict/scene
# and live streams. supervision (the tracker's dependency) asks for opencv-python, the build that loads libGL;
# both builds install the same cv2 module, so the headless one is reinstalled last and cv2 needs no X or GL
# libraries. Behind a proxy that re-signs TLS, pass its CA bundle and pip's configuration as build secrets (they
# stay out of the image; docs/deployment.md):
#   docker build --secret id=ca.crt,src=/etc/ssl/certs/ca-certificates.crt --secret id=pip.conf,src=pip.conf .
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca.crt,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['scene']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps --force-reinstall \
        "opencv-python-headless==$(python -c "from importlib.metadata import version; \
print(version('opencv-python-headless'))")" \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY model ./model
COPY app ./app
COPY training ./training
COPY vtfpar ./vtfpar
# Building the package fetches its build backend (setuptools), so this step takes the same secrets.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca.crt,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

USER 10001:10001
# Run from the home directory so `python -m app` imports the installed package, not the source copy.
WORKDIR /home/vtfpar
EXPOSE 8000

# Ready means loaded, warmed and not draining; urllib because the slim image has no curl. The start period covers a
# cold compile of every warmed batch size on CUDA (an estimate, not measured on a GPU yet); with /cache kept, later
# starts take seconds.
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('VTFPAR_PORT', '8000'), timeout=4)"]

# Exec form: the server is PID 1 and receives SIGTERM itself, so it drains in-flight requests before exiting.
# CMD rather than ENTRYPOINT, so `docker compose run api vtfpar evaluate ...` runs the other commands.
CMD ["python", "-m", "app"]
