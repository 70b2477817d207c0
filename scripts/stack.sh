#!/usr/bin/env bash
# The production-like local stack, without Docker, all on 127.0.0.1:
#   nginx (STACK_PORT) -> gunicorn + gevent instances app1, app2, ... (STACK_APP_PORTS),
#   one Huey consumer (job metrics on STACK_WORKER_METRICS_PORT), Prometheus scraping them all,
#   against the local PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).
#
#   scripts/stack.sh up       install nginx and prometheus (apt-get) if missing, create the database
#                             if missing, migrate, seed, start everything, wait until nginx answers
#   scripts/stack.sh down     stop exactly what `up` started (the PID files in STACK_DIR/pids)
#   scripts/stack.sh status   what runs
#
# Environment (defaults):
#   STACK_PORT=8080  STACK_APP_PORTS="8001 8002"  STACK_WORKER_METRICS_PORT=9101
#   STACK_PROMETHEUS_PORT=9090  STACK_DIR=run/stack (relative to the repository)
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ecommerce_stack  REDIS_URL=redis://127.0.0.1:6379/1
#   STACK_SEED_PRODUCTS=1000  STACK_BOOT_TIMEOUT=60 (s)  STACK_STOP_TIMEOUT=30 (s)
#   STACK_PROXY_READ_TIMEOUT=35 (s, nginx's proxy_read_timeout)
# Every other app setting (AUTH_RATE_LIMIT, WEB_CONCURRENCY, LOG_LEVEL, APP_ENV, ...) is passed
# through. APP_ENV defaults to production, with a SECRET_KEY made once into STACK_DIR/secret_key.
#
# Every process is started in a session of its own (setsid), so its PID is also the process
# group of its children (gunicorn's workers, nginx's workers). A PID file holds "PID STARTTIME":
# `down` signals a PID only while /proc says that process started at that very moment, so a
# stale file never stops another process that got the same PID.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STACK_PORT=${STACK_PORT:-8080}
STACK_APP_PORTS=${STACK_APP_PORTS:-"8001 8002"}
STACK_WORKER_METRICS_PORT=${STACK_WORKER_METRICS_PORT:-9101}
STACK_PROMETHEUS_PORT=${STACK_PROMETHEUS_PORT:-9090}
STACK_DIR=${STACK_DIR:-run/stack}
STACK_SEED_PRODUCTS=${STACK_SEED_PRODUCTS:-1000}
STACK_BOOT_TIMEOUT=${STACK_BOOT_TIMEOUT:-60}
STACK_STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}
STACK_PROXY_READ_TIMEOUT=${STACK_PROXY_READ_TIMEOUT:-35}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ecommerce_stack}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/1}

[[ -n $STACK_DIR ]] || { echo "stack: STACK_DIR is empty" >&2; exit 2; }
[[ $STACK_DIR == /* ]] || STACK_DIR="$ROOT/$STACK_DIR"
STACK_DIR=${STACK_DIR%/}
PIDS="$STACK_DIR/pids"
PORTS_FILE="$STACK_DIR/ports.env"
LOGS="$STACK_DIR/logs"
BIN="$ROOT/.venv/bin"
PY="$BIN/python"
CHECKS="$ROOT/scripts/stack/checks.py"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PROMETHEUS=$(command -v prometheus || echo /usr/bin/prometheus)
PROMTOOL=$(command -v promtool || echo /usr/bin/promtool)

# Settings of the calling shell that belong to one process, not to the whole stack (the Makefile
# exports PORT): each process below gets its own.
unset PORT HOST INSTANCE_NAME PROMETHEUS_MULTIPROC_DIR WORKER_METRICS_PORT WORKER_METRICS_HOST TRUSTED_PROXY_HOPS

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# -- processes ------------------------------------------------------------------------------

# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

# The names of the PID files present, in the order to stop them: nginx first (no new requests),
# then the instances, the worker, Prometheus last.
pid_names() {
  local file names=()
  [[ -f $PIDS/nginx.pid ]] && names+=(nginx)
  for file in "$PIDS"/app*.pid; do [[ -f $file ]] && names+=("$(basename "$file" .pid)"); done
  for name in worker prometheus; do [[ -f $PIDS/$name.pid ]] && names+=("$name"); done
  echo "${names[@]}"
}

# stop_all: SIGTERM (SIGINT for Huey: finish the running jobs) by PID, wait, then SIGKILL what
# is left of each process group.
stop_all() {
  local names name state pid pgids=() left
  read -ra names <<<"$(pid_names)"
  if ((${#names[@]} == 0)); then
    say "nothing to stop (no PID files in $PIDS)"
    return 0
  fi
  for name in "${names[@]}"; do
    read -r state pid < <(leader "$PIDS/$name.pid") || state=none
    if [[ $state == running ]]; then
      case $name in worker) kill -INT "$pid" ;; *) kill -TERM "$pid" ;; esac 2>/dev/null || true
      kill -CONT -- "-$pid" 2>/dev/null || true # a stopped (SIGSTOP) process acts on it only now
      say "stopping $name (pid $pid)"
      pgids+=("$pid")
      if [[ $name == nginx ]]; then wait_groups 5 "$pid" || true; fi
    elif [[ $state == gone && -n $(group_members "$pid") ]]; then
      # The leader was killed; its workers may still run. While they do, their group keeps
      # its PID from being reused: they are ours.
      say "$name (pid $pid) is gone; stopping what is left of its process group"
      kill -TERM -- "-$pid" 2>/dev/null || true
      kill -CONT -- "-$pid" 2>/dev/null || true
      pgids+=("$pid")
    else
      say "$name is not running"
    fi
  done
  if ((${#pgids[@]})) && ! wait_groups "$STACK_STOP_TIMEOUT" "${pgids[@]}"; then
    for pid in "${pgids[@]}"; do
      left=$(group_members "$pid" | tr '\n' ' ')
      if [[ -n $left ]]; then
        say "process group $pid still running after ${STACK_STOP_TIMEOUT}s: SIGKILL ($left)"
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
    done
    wait_groups 5 "${pgids[@]}" || die "process groups still running: ${pgids[*]}"
  fi
  for name in "${names[@]}"; do rm -f "$PIDS/$name.pid"; done
  return 0
}

# -- up -------------------------------------------------------------------------------------

# Debian's nginx and prometheus packages, installed once.
ensure_packages() {
  local missing=()
  [[ -x $NGINX ]] || missing+=(nginx)
  [[ -x $PROMETHEUS ]] || missing+=(prometheus)
  ((${#missing[@]})) || return 0
  apt_install "${missing[@]}"
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  PROMETHEUS=$(command -v prometheus || echo /usr/bin/prometheus)
  PROMTOOL=$(command -v promtool || echo /usr/bin/promtool)
}

# render TEMPLATE OUTPUT: the lines tagged "# stack:<what>" get the actual ports and paths; a
# run of lines tagged "# stack:app" becomes one line per app port (8001 -> port, app1 -> appN).
render() {
  awk -v ports="$STACK_APP_PORTS" -v listen="$STACK_PORT" -v worker="$STACK_WORKER_METRICS_PORT" \
    -v prom="$STACK_PROMETHEUS_PORT" -v rules="$ROOT/prometheus/alerts.yml" \
    -v read_timeout="$STACK_PROXY_READ_TIMEOUT" -v storefront="$ROOT/storefront" -v media="$MEDIA_ROOT" '
    function swap(line, from, to,   at) {
      at = index(line, from)
      return at ? substr(line, 1, at - 1) to substr(line, at + length(from)) : line
    }
    !match($0, /# stack:[a-z_]+/) { in_apps = 0; print; next }
    {
      what = substr($0, RSTART + 8, RLENGTH - 8)
      if (what == "app") {
        if (!in_apps) {
          n = split(ports, port, " ")
          for (i = 1; i <= n; i++) print swap(swap($0, "8001", port[i]), "app1", "app" i)
        }
        in_apps = 1
        next
      }
      in_apps = 0
      line = $0
      if (what == "listen") line = swap(line, "8080", listen)
      else if (what == "worker") line = swap(line, "9101", worker)
      else if (what == "prometheus") line = swap(line, "9090", prom)
      else if (what == "rules") line = swap(line, "prometheus/alerts.yml", rules)
      else if (what == "read_timeout") line = swap(line, "35s", read_timeout "s")
      else if (what == "storefront") line = swap(line, "root storefront;", "root " storefront ";")
      else if (what == "media") line = swap(line, "alias media/;", "alias " media "/;")
      print line
    }' "$1" >"$2"
}

app_names() {
  local i=0 port
  for port in $STACK_APP_PORTS; do
    i=$((i + 1))
    echo "app$i $port"
  done
}

up() {
  local running
  running=$(status_lines | grep -c ' running' || true)
  ((running == 0)) || die "the stack already runs ($running processes; scripts/stack.sh status); stop it first"
  [[ -x $PY ]] || die "no virtualenv in .venv: run 'make install' (make stack does)"
  local ports
  read -ra ports <<<"$STACK_PORT $STACK_APP_PORTS $STACK_WORKER_METRICS_PORT $STACK_PROMETHEUS_PORT"
  (($(printf '%s\n' "${ports[@]}" | sort -u | wc -l) == ${#ports[@]})) || die "the ports must differ: ${ports[*]}"

  ensure_packages
  "$PY" "$CHECKS" ports "${ports[@]}" || exit 1
  "$PY" "$CHECKS" redis "$REDIS_URL" || exit 1
  "$PY" "$CHECKS" database "$DATABASE_URL" || exit 1

  mkdir -p "$STACK_DIR" "$PIDS" "$LOGS" "$STACK_DIR/prometheus-data"
  rm -f "$PIDS"/*.pid
  # `status` shows the ports this stack really uses, whatever the environment says later.
  printf 'STACK_PORT=%q\nSTACK_APP_PORTS=%q\nSTACK_WORKER_METRICS_PORT=%q\nSTACK_PROMETHEUS_PORT=%q\n' \
    "$STACK_PORT" "$STACK_APP_PORTS" "$STACK_WORKER_METRICS_PORT" "$STACK_PROMETHEUS_PORT" >"$PORTS_FILE"
  if [[ -z ${SECRET_KEY:-} ]]; then
    [[ -s $STACK_DIR/secret_key ]] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$STACK_DIR/secret_key")
    SECRET_KEY=$(<"$STACK_DIR/secret_key")
  fi
  export SECRET_KEY APP_ENV=${APP_ENV:-production} FLASK_APP=wsgi.py
  # The payment sandbox's ledger and the emails (without MAIL_SERVER) of this stack, not make run's.
  export SANDBOX_GATEWAY_PATH=${SANDBOX_GATEWAY_PATH:-$STACK_DIR/sandbox_gateway.db}
  export MAIL_FOLDER=${MAIL_FOLDER:-$STACK_DIR/mail}
  # Product pictures: written by the instances, served by nginx itself (alias in nginx.conf).
  export MEDIA_ROOT=${MEDIA_ROOT:-$STACK_DIR/media}
  mkdir -p "$MEDIA_ROOT"

  render nginx.conf "$STACK_DIR/nginx.conf"
  if ((EUID == 0)); then
    # Started by root, nginx would run its workers as nobody, who may not reach STACK_DIR (under
    # /root, or a 0700 temporary folder) for its temp files and cache. Every process of the
    # stack runs as the user who started it; so do nginx's workers.
    sed -i '1i user root;' "$STACK_DIR/nginx.conf"
  fi
  render prometheus.yml "$STACK_DIR/prometheus.yml"
  "$NGINX" -t -q -c "$STACK_DIR/nginx.conf" -p "$STACK_DIR/" -e "$LOGS/nginx-error.log" \
    || die "nginx -t failed on $STACK_DIR/nginx.conf"
  if [[ -x $PROMTOOL ]]; then
    "$PROMTOOL" check config "$STACK_DIR/prometheus.yml" >"$LOGS/promtool.log" 2>&1 \
      || { cat "$LOGS/promtool.log" >&2; die "promtool check config failed on $STACK_DIR/prometheus.yml"; }
  fi

  say "migrating and seeding $STACK_SEED_PRODUCTS products ($LOGS/setup.log)"
  { "$BIN/flask" db upgrade && "$BIN/flask" seed --products "$STACK_SEED_PRODUCTS"; } >"$LOGS/setup.log" 2>&1 \
    || { tail -n 30 "$LOGS/setup.log" >&2; die "migrations or seeding failed"; }

  STARTED_PIDS=()
  trap 'say "start failed: stopping what was started"; stop_all >&2' EXIT
  local name port urls=()
  while read -r name port; do
    rm -rf "${STACK_DIR:?}/metrics/$name"
    mkdir -p "$STACK_DIR/metrics/$name"
    start "$name" "$LOGS/$name.log" env INSTANCE_NAME="$name" HOST=127.0.0.1 PORT="$port" \
      TRUSTED_PROXY_HOPS=1 PROMETHEUS_MULTIPROC_DIR="$STACK_DIR/metrics/$name" \
      "$BIN/gunicorn" --config gunicorn.conf.py wsgi:app
    urls+=("http://127.0.0.1:$port/healthz")
  done < <(app_names)
  start worker "$LOGS/worker.log" env WORKER_METRICS_HOST=127.0.0.1 WORKER_METRICS_PORT="$STACK_WORKER_METRICS_PORT" \
    "$BIN/huey_consumer" ecommerce.worker.huey -k thread -w "${WORKERS:-4}"
  start prometheus "$LOGS/prometheus.log" "$PROMETHEUS" --config.file="$STACK_DIR/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus-data" --storage.tsdb.retention.time=7d \
    --web.listen-address="127.0.0.1:$STACK_PROMETHEUS_PORT"
  urls+=("http://127.0.0.1:$STACK_WORKER_METRICS_PORT/metrics" "http://127.0.0.1:$STACK_PROMETHEUS_PORT/-/ready")
  wait_for "${urls[@]}"

  start nginx "$LOGS/nginx-error.log" "$NGINX" -c "$STACK_DIR/nginx.conf" -p "$STACK_DIR/" \
    -e "$LOGS/nginx-error.log" -g "daemon off;"
  wait_for "http://127.0.0.1:$STACK_PORT/healthz"
  trap - EXIT

  say "up"
  status
  echo
  echo "  API         http://127.0.0.1:$STACK_PORT/api/products/   (Swagger UI: http://127.0.0.1:$STACK_PORT/api/docs/)"
  echo "  Prometheus  http://127.0.0.1:$STACK_PROMETHEUS_PORT/targets"
  echo "  logs        $LOGS/"
  echo "  stop with   make stack-down   (or scripts/stack.sh down)"
}

wait_for() {
  local pids
  pids=$(IFS=,; echo "${STARTED_PIDS[*]}")
  "$PY" "$CHECKS" wait "$STACK_BOOT_TIMEOUT" "$pids" "$@" && return 0
  local log
  for log in "$LOGS"/*.log; do
    echo "--- $log (last lines)" >&2
    tail -n 15 "$log" >&2
  done
  die "the stack did not come up"
}

# -- status ---------------------------------------------------------------------------------

# One line per PID file: NAME PID running|exited ADDRESS.
status_lines() {
  local name pid address
  for name in $(pid_names); do
    case $name in
      nginx) address="http://127.0.0.1:$STACK_PORT" ;;
      worker) address="http://127.0.0.1:$STACK_WORKER_METRICS_PORT/metrics" ;;
      prometheus) address="http://127.0.0.1:$STACK_PROMETHEUS_PORT" ;;
      *) address="http://127.0.0.1:$(app_names | awk -v n="$name" '$1 == n {print $2}')" ;;
    esac
    if pid=$(ours "$PIDS/$name.pid"); then
      printf '%-11s %-8s %-8s %s\n' "$name" "$pid" running "$address"
    else
      read -r pid _ <"$PIDS/$name.pid" || pid=-
      printf '%-11s %-8s %-8s %s\n' "$name" "$pid" exited "$address"
    fi
  done
}

status() {
  local lines
  lines=$(status_lines)
  if [[ -z $lines ]]; then
    say "not running (no PID files in $PIDS)"
    return 3
  fi
  printf '%-11s %-8s %-8s %s\n' NAME PID STATE ADDRESS
  echo "$lines"
  ! grep -q ' exited ' <<<"$lines"
}

if [[ ${1:-} != up && -f $PORTS_FILE ]]; then
  # shellcheck source=/dev/null
  source "$PORTS_FILE"
fi

case ${1:-} in
  up) up ;;
  down) stop_all && say "down" ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
