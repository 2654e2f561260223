#!/usr/bin/env bash
# Install the system tools the deployment tests need, from Debian's packages:
#   promtool + prometheus (check the Prometheus config and rules, unit-test the rules, scrape the
#   services in a test), docker-compose 1.29 (validate docker-compose.yml without a Docker engine) and
#   prometheus-alertmanager 0.25 (the notifier's alertmanager receiver and format, tested against it),
#   postgresql + postgresql-contrib (tests/archive start their own server with initdb and pg_ctl),
#   chromium (the console's browser tests drive it with Playwright: tests/console/test_browser.py).
# Idempotent and quiet: does nothing when the tools are already there. Needs root (as CI runs) or sudo.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# PostgreSQL (initdb + pg_ctl, unaccent in contrib): the archive's tests run a real server on loopback
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql postgresql-contrib)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# de-duplicate
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci-deps: apt-get not found; install ${packages[*]} yourself (the deploy tests skip without them)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ci-deps: not root and no sudo; install ${packages[*]} yourself (the deploy tests skip without them)" >&2
    exit 0
  fi
fi
echo "ci-deps: installing ${packages[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# The Debian package enables a prometheus service; nothing here needs it running.
