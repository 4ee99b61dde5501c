#!/usr/bin/env bash
# Builds the Dockerfile's image with podman, exactly as docker-compose.yml builds it, and runs it (.ci/image_check.py):
# /health/ready, a /predict answer, HOG in /info, a stream from GStreamer's RTSP server with detection, and a clean
# exit on SIGTERM. Run from a checkout with the project installed (.ci/run calls it after its install):
#     bash .ci/image-check.sh
# Base images cannot be pulled here, so the Dockerfile's FROM is stood in for by Debian bookworm made with
# debootstrap (Python 3.11 and pip, as in python:3.11-slim-bookworm), built once and reused. podman runs with runc,
# host networking and explicit ulimits (crun fails on this kernel's hybrid cgroups). pip inside the build gets the
# host's CA bundle and pip configuration as build secrets (never stored in the image), and the local directories
# that configuration names as read-only bind mounts. docs/deployment.md says how to run the same check with Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${VTFPAR_CHECK_IMAGE:-localhost/vtfpar-serve:check}
BASE=docker.io/library/$(awk 'toupper($1) == "FROM" {print $2; exit}' Dockerfile)
ROOTFS=${VTFPAR_CHECK_ROOTFS:-/var/tmp/vtfpar-check-rootfs}
CA_BUNDLE=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
# crun fails on this kernel's hybrid cgroups; the default nofile/nproc limits are refused there too.
RUN_FLAGS=(--runtime runc --network=host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

started=$(date +%s)
step() { echo "== image-check $(date -u +%H:%M:%S) (+$(($(date +%s) - started)) s): $*"; }
fail() { echo "image-check: FAILED: $*" >&2; exit 1; }

# retry ATTEMPTS COMMAND...: network installs fail now and then; wait longer between each try.
retry() {
    local attempts=$1 try=1
    shift
    until "$@"; do
        [ "$try" -ge "$attempts" ] && return 1
        echo "image-check: attempt $try of $attempts failed: $*; retrying in $((try * 15)) s" >&2
        sleep $((try * 15))
        try=$((try + 1))
    done
}

for command in podman debootstrap runc python; do
    command -v "$command" >/dev/null || fail "$command is not installed (bash .ci/install-deploy-tools.sh installs it)"
done
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import gi' 2>/dev/null \
    || fail "the RTSP camera needs the system python3-gi (bash .ci/install-deploy-tools.sh installs it)"
[ -s "$CA_BUNDLE" ] || fail "no CA bundle at $CA_BUNDLE (set PIP_CERT to the one pip uses here)"

build_base() {
    rm -rf "$ROOTFS"
    retry 3 debootstrap --variant=minbase --include=python3,python3-pip,python3-dev,ca-certificates \
        bookworm "$ROOTFS" http://deb.debian.org/debian || return 1
    # As in python:3.11-slim: `python` and `pip` on the PATH, and pip may install into the system Python.
    rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf python3 "$ROOTFS/usr/bin/python"
    ln -sf pip3 "$ROOTFS/usr/bin/pip"
    # apt in the build reaches the packages the way this host's apt does (e.g. a mirror's validity settings).
    cp /etc/apt/apt.conf.d/99* "$ROOTFS/etc/apt/apt.conf.d/" 2>/dev/null || true
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | podman import --change 'CMD ["python3"]' - "$BASE" >/dev/null || return 1
    rm -rf "$ROOTFS"
}

if podman image exists "$BASE"; then
    step "stand-in base $BASE present: reused"
else
    step "making the stand-in base $BASE with debootstrap"
    build_base || fail "could not make the stand-in base with debootstrap (see above)"
fi

# The host's pip configuration as one file for the build (pip config list covers the files and PIP_* variables);
# the CA bundle goes in as its own secret, and local paths it names (file:// indexes, find-links, constraints) are
# mounted read-only at the same place.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work/pip.conf" >"$work/mounts" <<'PY'
import configparser, os, re, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
options = {}
for line in listed.stdout.splitlines():  # e.g. global.find-links='/opt/wheels'; ":env:" (PIP_* variables) last
    match = re.fullmatch(r"(global|install|:env:)\.([a-z-]+)='(.*)'", line)
    if match and match[2] not in ("cert", "disable-pip-version-check"):
        options[match[2]] = match[3]
config = configparser.ConfigParser()
config["global"] = options
with open(sys.argv[1], "w") as out:
    config.write(out)
paths = set()
for value in options.values():
    for word in value.split():
        path = word.removeprefix("file://").rstrip("/")
        if path.endswith("/simple"):  # a local index: its pages link to files beside it
            path = os.path.dirname(path)
        if path.startswith("/") and os.path.exists(path):
            paths.add(path)
print("\n".join(sorted(paths)))
PY
mounts=()
while read -r path; do
    [ -n "$path" ] && mounts+=(--volume "$path:$path:ro")
done <"$work/mounts"

step "building $IMAGE"
build() {
    podman build "${RUN_FLAGS[@]}" --pull=never --layers \
        --secret "id=ca.crt,src=$CA_BUNDLE" --secret "id=pip.conf,src=$work/pip.conf" "${mounts[@]}" \
        -t "$IMAGE" .
}
retry 2 build || fail "podman build failed (see above)"
podman image inspect "$IMAGE" --format 'image size: {{.Size}} bytes'

step "running $IMAGE"
python .ci/image_check.py --image "$IMAGE" -- "${RUN_FLAGS[@]}" || fail "the image did not pass its checks (see above)"
step "passed"
