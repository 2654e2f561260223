#!/usr/bin/env bash
# `make test-docker`: build veille's image and run docker-compose.yml on a real Docker engine, then
# check the running containers (tests/docker/). Works without any image registry:
#   1. a Docker engine: $DOCKER_HOST or /var/run/docker.sock when one answers, otherwise Debian's
#      dockerd started here (root only; vfs storage, no iptables, no default bridge) and stopped at exit;
#   2. the base image veille-base:bookworm, made once by debootstrap from Debian's packages;
#   3. a wheelhouse (pip wheel on this host, which reaches a package index; builds cannot);
#   4. veille's image from the Dockerfile (legacy builder, installing from the wheelhouse only);
#   5. the stand-in image of deploy/test/Dockerfile (Debian's nats-server and prometheus binaries);
#   6. pytest tests/docker: docker-compose.yml + deploy/compose.test.yml, up, checks, down.
# Each step prints how long it took. When a step cannot run here the tests are still collected and
# skip with the reason found (VEILLE_DOCKER_SKIP). State (images, layers) is kept in
# $VEILLE_DOCKER_STATE (default /var/tmp/veille-docker) so that the next run reuses the base image and
# the build cache. docs/operations.md, "Testing the compose stack".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-.venv/bin/python}
STATE=${VEILLE_DOCKER_STATE:-/var/tmp/veille-docker}
BASE_IMAGE=${BASE_IMAGE:-veille-base:bookworm}
APP_IMAGE=${APP_IMAGE:-veille:local}
TESTBED_IMAGE=${TESTBED_IMAGE:-veille-testbed:local}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DOCKER_BUILDKIT=0 # BuildKit would fetch its frontend image from a registry
START=$(date +%s)
step_start=$START
dockerd_pid=""

say() { printf '[test-docker %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step_done() {
  local now
  now=$(date +%s)
  say "$1: $((now - step_start)) s (total $((now - START)) s)"
  step_start=$now
}

cleanup() {
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    say "stopping dockerd (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

run_tests() {
  step_start=$(date +%s)
  local status=0
  VEILLE_DOCKER_TESTS=1 APP_IMAGE=$APP_IMAGE TESTBED_IMAGE=$TESTBED_IMAGE \
    "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" tests/docker "$@" || status=$?
  step_done "tests"
  return $status
}

skip_all() {
  say "cannot run Docker here: $1"
  export VEILLE_DOCKER_SKIP="$1"
  run_tests
  exit $?
}

# ---- 1. a Docker engine ------------------------------------------------------------------------
if ! command -v docker >/dev/null 2>&1; then
  skip_all "no docker command (Debian: apt-get install docker.io)"
fi
if [ -z "${DOCKER_HOST:-}" ] && ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    skip_all "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
  fi
  if [ "$(id -u)" -ne 0 ]; then
    skip_all "no Docker engine answers and starting dockerd needs root"
  fi
  mkdir -p "$STATE/data" "$STATE/exec"
  export DOCKER_HOST="unix://$STATE/docker.sock"
  say "starting dockerd (data in $STATE, log $STATE/dockerd.log)"
  dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
    --host "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    skip_all "dockerd did not start: $(tail -n 3 "$STATE/dockerd.log" | tr '\n' ' ')"
  fi
fi
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
say "Docker engine $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST; compose: $(docker-compose version --short 2>/dev/null || echo none)"
step_done "engine"

# ---- 2. the base image -------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 ||
    skip_all "no $BASE_IMAGE image and no debootstrap to make it (Debian: apt-get install debootstrap)"
  rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
  say "making $BASE_IMAGE with debootstrap from $DEBIAN_MIRROR"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$STATE/debootstrap.log" 2>&1; then
    rm -rf "$rootfs"
    skip_all "debootstrap failed (is $DEBIAN_MIRROR reachable?): $(tail -n 2 "$STATE/debootstrap.log" | tr '\n' ' ')"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
step_done "base image $BASE_IMAGE"

# ---- 3. the wheelhouse -------------------------------------------------------------------------
make --no-print-directory wheelhouse
step_done "wheelhouse"

# ---- 4. veille's image -------------------------------------------------------------------------
say "building $APP_IMAGE (legacy builder, from the wheelhouse only)"
docker build --quiet \
  --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
  --build-arg PIP_INSTALL_OPTIONS="--no-index --find-links=/wheelhouse" \
  -t "$APP_IMAGE" . >/dev/null
docker image prune -f >/dev/null
say "$APP_IMAGE: $(docker image inspect "$APP_IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
step_done "image $APP_IMAGE"

# ---- 5. the stand-ins --------------------------------------------------------------------------
testbed=$(mktemp -d "$STATE/testbed.XXXXXX")
cp deploy/test/Dockerfile deploy/test/*.py "$testbed/"
for tool in nats-server prometheus promtool; do
  path=$(command -v "$tool") || skip_all "$tool is not installed (Debian: apt-get install nats-server prometheus)"
  cp "$path" "$testbed/"
done
docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$TESTBED_IMAGE" "$testbed" >/dev/null
rm -rf "$testbed"
step_done "image $TESTBED_IMAGE"

# ---- 6. the stack ------------------------------------------------------------------------------
cd "$REPO"
run_tests "$@"
