#!/usr/bin/env bash
# Make sure the services the tests use answer on 127.0.0.1: PostgreSQL, RabbitMQ, Redis; and that
# a headless Chromium is there for the offline-docs browser test (tests/core/test_docs.py), and
# kubectl (its built-in kustomize) for the Kubernetes manifests test (tests/deploy/test_kubernetes.py).
# Starts what is installed but stopped; installs RabbitMQ, Redis, Chromium and kubectl with apt
# packages when they are missing (as root). Without a PostgreSQL server the tests use an embedded one.
# Under CI (CI=true) a service that still does not answer is an error, never a skip.
set -u

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {  # port seconds
  local i
  for ((i = 0; i < $2; i++)); do answers "$1" && return 0; sleep 1; done
  return 1
}

as_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  as_root && command -v apt-get >/dev/null || return 1
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null 2>&1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

ensure_postgres() {
  answers 5432 && return 0
  if command -v pg_lsclusters >/dev/null && as_root; then
    pg_lsclusters -h | while read -r version cluster _; do
      pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
    done
    wait_for 5432 20 && return 0
  fi
  echo "ensure-services: no PostgreSQL on 127.0.0.1:5432; the tests will start an embedded one"
}

ensure_rabbitmq() {
  answers 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if command -v rabbitmq-server >/dev/null && as_root; then
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for 5672 40 && return 0
  fi
  echo "ensure-services: RabbitMQ does not answer on 127.0.0.1:5672"
  return 1
}

ensure_redis() {
  answers 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
    wait_for 6379 10 && return 0
  fi
  echo "ensure-services: Redis does not answer on 127.0.0.1:6379"
  return 1
}

has_chromium() {
  [ -n "${BEE_TEST_CHROMIUM:-}" ] && return 0
  command -v chromium || command -v chromium-browser || command -v google-chrome || command -v google-chrome-stable
} >/dev/null

ensure_chromium() {
  has_chromium && return 0
  apt_install chromium
  has_chromium && return 0
  echo "ensure-services: no Chromium for the docs browser test (apt-get install chromium)"
  return 1
}

has_kubectl() {
  [ -n "${BEE_TEST_KUBECTL:-}" ] && return 0
  command -v kubectl
} >/dev/null

ensure_kubectl() {
  has_kubectl && return 0
  apt_install kubectl
  has_kubectl && return 0
  echo "ensure-services: no kubectl for the Kubernetes manifests test (apt-get install kubectl)"
  return 1
}

# The official AsyncAPI parser for tests/events/test_asyncapi.py: @asyncapi/parser pinned by
# scripts/asyncapi/package-lock.json, installed from the npm registry into .tools/asyncapi
# (gitignored); installed again when the lock file changes.
ensure_asyncapi_parser() {
  local root dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="$root/.tools/asyncapi"
  if [ -f "$dir/node_modules/@asyncapi/parser/package.json" ] &&
    cmp -s "$root/scripts/asyncapi/package-lock.json" "$dir/package-lock.json"; then
    return 0
  fi
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  if command -v node >/dev/null && command -v npm >/dev/null; then
    mkdir -p "$dir" && cp "$root/scripts/asyncapi/package.json" "$root/scripts/asyncapi/package-lock.json" "$dir/" &&
      npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund >/dev/null 2>&1 && return 0
  fi
  echo "ensure-services: no AsyncAPI parser for tests/events/test_asyncapi.py (needs node and npm)"
  return 1
}

status=0
ensure_postgres
ensure_rabbitmq || status=1
ensure_redis || status=1
ensure_chromium || status=1
ensure_kubectl || status=1
ensure_asyncapi_parser || status=1

if [ "$status" != 0 ]; then
  case "${CI:-}" in
    true | 1 | yes) echo "ensure-services: a needed service (or Chromium, or kubectl) is missing under CI"; exit 1 ;;
    *) echo "ensure-services: tests that need the missing service will be skipped" ;;
  esac
fi
exit 0
