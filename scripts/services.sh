#!/usr/bin/env bash
# Make sure the real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379)
# are up for the tests: install them if missing (Debian packages; needs root),
# start them if stopped; and that Prometheus and promtool, Node.js and the
# TypeScript SDK's packages are installed. Exits non-zero if one is still
# missing; the tests then fail under CI=true and skip elsewhere.
set -u

log() { echo "services: $*" >&2; }

reachable() {  # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

wait_for() {  # name host port
  for _ in $(seq 1 60); do
    reachable "$2" "$3" && { log "$1 is up on $2:$3"; return 0; }
    sleep 0.5
  done
  log "$1 is still not reachable on $2:$3"
  return 1
}

APT_UPDATED=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "not root: cannot install $*; install it by hand"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq >/dev/null && APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  reachable 127.0.0.1 5432 && { log "PostgreSQL is up"; return 0; }
  local fresh=0
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    log "installing PostgreSQL"
    apt_install postgresql || return 1
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  if [ "$fresh" = 1 ]; then
    # The project's machines use trust auth on loopback; a fresh install asks
    # for passwords, so the tests' loopback connections are trusted here too.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  wait_for PostgreSQL 127.0.0.1 5432 || return 1
  if [ "$fresh" = 1 ]; then
    runuser -u postgres -- psql -qc 'CREATE DATABASE test' >/dev/null 2>&1 || true
  fi
}

ensure_redis() {
  reachable 127.0.0.1 6379 && { log "Redis is up"; return 0; }
  if ! command -v redis-server >/dev/null; then
    log "installing Redis"
    apt_install redis-server || return 1
  fi
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for Redis 127.0.0.1 6379
}

ensure_prometheus() {
  # The metrics tests run promtool and a Prometheus of their own on loopback;
  # the package's daemon is never started here.
  command -v promtool >/dev/null && command -v prometheus >/dev/null && return 0
  log "installing Prometheus and promtool"
  apt_install --no-install-recommends prometheus
}

ensure_typescript_sdk() {
  # The TypeScript SDK's tests (tests/e2e/test_typescript_sdk.py) need Node.js
  # 18 or later and npm (Debian's packages when missing), and the SDK's
  # packages at the versions package-lock.json locks (npm ci, from npm).
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 18 ] || ! command -v npm >/dev/null; then
    log "installing Node.js and npm"
    apt_install nodejs npm || return 1
  fi
  local sdk
  sdk="$(dirname "$0")/../clients/typescript"
  if [ ! -d "$sdk/node_modules" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules" ]; then
    log "installing the TypeScript SDK's packages (npm ci)"
    (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
    touch "$sdk/node_modules"
  fi
}

status=0
ensure_postgres || status=1
ensure_redis || status=1
ensure_prometheus || status=1
ensure_typescript_sdk || status=1
exit $status
