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
#   scripts/stack.sh reload   migrate, then restart the app instances one at a time (new code, new
#                             processes), each out of nginx's choice while it restarts (a drain
#                             file, no nginx reload), then the worker; clients go on being served,
#                             keep-alive ones included (see reload() below)
#
# Environment (defaults):
#   STACK_PORT=8080  STACK_APP_PORTS="8001 8002"  STACK_WORKER_METRICS_PORT=9101
#   STACK_PROMETHEUS_PORT=9090  STACK_DIR=run/stack (relative to the repository)
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ecommerce_stack  REDIS_URL=redis://127.0.0.1:6379/1
#   STACK_SEED_PRODUCTS=1000  STACK_BOOT_TIMEOUT=60 (s)  STACK_STOP_TIMEOUT=30 (s)
#   STACK_PROXY_READ_TIMEOUT=35 (s, nginx's proxy_read_timeout)
#   STACK_DRAIN_TIMEOUT=STACK_PROXY_READ_TIMEOUT+5 (s, reload: how long nginx may go on with the
#   requests it holds on an instance taken out of its choice)
#   WEB_CONCURRENCY=cores / instances (at least 1: one gunicorn worker per core in all)
# Every other app setting (AUTH_RATE_LIMIT, LOG_LEVEL, APP_ENV, ...) is passed through. APP_ENV
# defaults to production, with a SECRET_KEY made once into STACK_DIR/secret_key.
# `up` saves the environment it gives the processes in STACK_DIR/env; `reload` starts the new
# processes with exactly that environment, whatever the calling shell holds.
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
ENV_FILE="$STACK_DIR/env"
NGINX_CONF="$STACK_DIR/nginx.conf"
DRAIN_DIR="$STACK_DIR/drain"
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

# send_stop NAME: SIGTERM (SIGINT for Huey: finish the running jobs) to the process of NAME's
# PID file, or to what is left of its process group when the leader is gone. Sets STOP_PGID to
# the process group to wait for (empty when nothing runs).
send_stop() {
  local name=$1 state pid
  STOP_PGID=
  read -r state pid < <(leader "$PIDS/$name.pid") || state=none
  if [[ $state == running ]]; then
    case $name in worker) kill -INT "$pid" ;; *) kill -TERM "$pid" ;; esac 2>/dev/null || true
    kill -CONT -- "-$pid" 2>/dev/null || true # a stopped (SIGSTOP) process acts on it only now
    say "stopping $name (pid $pid)"
    STOP_PGID=$pid
  elif [[ $state == gone && -n $(group_members "$pid") ]]; then
    # The leader was killed; its workers may still run. While they do, their group keeps
    # its PID from being reused: they are ours.
    say "$name (pid $pid) is gone; stopping what is left of its process group"
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -CONT -- "-$pid" 2>/dev/null || true
    STOP_PGID=$pid
  else
    say "$name is not running"
  fi
}

# reap PGID...: wait STACK_STOP_TIMEOUT for these process groups to end, then SIGKILL what is left.
reap() {
  local pid left
  (($#)) || return 0
  wait_groups "$STACK_STOP_TIMEOUT" "$@" && return 0
  for pid in "$@"; do
    left=$(group_members "$pid" | tr '\n' ' ')
    if [[ -n $left ]]; then
      say "process group $pid still running after ${STACK_STOP_TIMEOUT}s: SIGKILL ($left)"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  wait_groups 5 "$@" || die "process groups still running: $*"
}

# stop_all: send_stop to every process, nginx first (waited for: no new requests), then reap.
stop_all() {
  local names name pgids=()
  read -ra names <<<"$(pid_names)"
  if ((${#names[@]} == 0)); then
    say "nothing to stop (no PID files in $PIDS)"
    return 0
  fi
  for name in "${names[@]}"; do
    send_stop "$name"
    [[ -n $STOP_PGID ]] || continue
    pgids+=("$STOP_PGID")
    if [[ $name == nginx ]]; then wait_groups 5 "$STOP_PGID" || true; fi
  done
  reap "${pgids[@]}"
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
# run of lines tagged "# stack:app" becomes one line per app port (8001 -> port, app1 -> appN,
# and a drain/ file's path made absolute). The lines from "# stack:without" to
# "# stack:without_end" become one copy of the upstream group "ecommerce" per instance, named
# ecommerce_without_appN, without that instance's server line (reload's groups, nginx.conf).
render() {
  awk -v ports="$STACK_APP_PORTS" -v listen="$STACK_PORT" -v worker="$STACK_WORKER_METRICS_PORT" \
    -v prom="$STACK_PROMETHEUS_PORT" -v rules="$ROOT/prometheus/alerts.yml" \
    -v read_timeout="$STACK_PROXY_READ_TIMEOUT" -v storefront="$ROOT/storefront" -v media="$MEDIA_ROOT" \
    -v drain="$DRAIN_DIR" '
    function swap(line, from, to,   at) {
      at = index(line, from)
      return at ? substr(line, 1, at - 1) to substr(line, at + length(from)) : line
    }
    function emit(line) {
      print line
      if (in_group) group[++group_lines] = line
      if (in_group && line ~ /^[ \t]*}/) in_group = 0
    }
    /^[ \t]*upstream ecommerce \{/ { in_group = 1; group_lines = 0 }
    in_without {
      if (index($0, "# stack:without_end")) {
        in_without = 0
        if (!group_lines) {
          print "render: no upstream group \"ecommerce\" before the stack:without lines of " FILENAME > "/dev/stderr"
          exit 1
        }
        n = split(ports, port, " ")
        # One instance: nothing to send its requests to while it restarts (reload refuses it).
        if (n < 2) next
        for (i = 1; i <= n; i++) {
          for (j = 1; j <= group_lines; j++) {
            line = group[j]
            if (line ~ /^[ \t]*#/) continue
            if (index(line, "server 127.0.0.1:" port[i] " ")) continue
            line = swap(line, "upstream ecommerce {", "upstream ecommerce_without_app" i " {")
            line = swap(line, "zone ecommerce ", "zone ecommerce_without_app" i " ")
            print line
          }
        }
      }
      next
    }
    !match($0, /# stack:[a-z_]+/) { in_apps = 0; emit($0); next }
    {
      what = substr($0, RSTART + 8, RLENGTH - 8)
      if (what == "without") { in_apps = 0; in_without = 1; next }
      if (what == "app") {
        if (!in_apps) {
          n = split(ports, port, " ")
          for (i = 1; i <= n; i++) {
            if (n < 2 && index($0, "(-f drain/")) continue # no groups without an instance
            line = swap($0, "8001", port[i])
            gsub(/app1/, "app" i, line)
            emit(swap(line, "(-f drain/", "(-f " drain "/")) # after gsub: the folder may hold "app1"
          }
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
      emit(line)
    }' "$1" >"$2"
}

app_names() {
  local i=0 port
  for port in $STACK_APP_PORTS; do
    i=$((i + 1))
    echo "app$i $port"
  done
}

check_nginx_conf() {
  "$NGINX" -t -q -c "$NGINX_CONF" -p "$STACK_DIR/" -e "$LOGS/nginx-error.log" \
    || die "nginx -t failed on $NGINX_CONF"
}

# start_app NAME PORT, start_worker: one app instance, the Huey consumer, with the environment
# of the stack (PROCESS_ENV: nothing more in `up`, which exports it; `reload` sets it from
# ENV_FILE) and the settings of their own.
start_app() {
  local name=$1 port=$2
  rm -rf "${STACK_DIR:?}/metrics/$name"
  mkdir -p "$STACK_DIR/metrics/$name"
  start "$name" "$LOGS/$name.log" env "${PROCESS_ENV[@]}" INSTANCE_NAME="$name" HOST=127.0.0.1 PORT="$port" \
    TRUSTED_PROXY_HOPS=1 PROMETHEUS_MULTIPROC_DIR="$STACK_DIR/metrics/$name" \
    "$BIN/gunicorn" --config gunicorn.conf.py wsgi:app
}

start_worker() {
  start worker "$LOGS/worker.log" env "${PROCESS_ENV[@]}" WORKER_METRICS_HOST=127.0.0.1 \
    WORKER_METRICS_PORT="$STACK_WORKER_METRICS_PORT" \
    "$BIN/huey_consumer" ecommerce.worker.huey -k thread -w "$WORKERS"
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
  # `status` and `reload` use the ports (and nginx's read timeout) this stack really has,
  # whatever the environment says later.
  printf 'STACK_PORT=%q\nSTACK_APP_PORTS=%q\nSTACK_WORKER_METRICS_PORT=%q\nSTACK_PROMETHEUS_PORT=%q\nSTACK_PROXY_READ_TIMEOUT=%q\n' \
    "$STACK_PORT" "$STACK_APP_PORTS" "$STACK_WORKER_METRICS_PORT" "$STACK_PROMETHEUS_PORT" \
    "$STACK_PROXY_READ_TIMEOUT" >"$PORTS_FILE"
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
  WORKERS=${WORKERS:-4} # the worker's threads (not exported unless it came so)
  # gunicorn.conf.py gives an instance one worker per core, right for one instance per machine;
  # every instance of this stack runs on this one, so they share its cores: one worker per core
  # in all. (2 cores, 2 instances: 1 worker each. Against 2 each, the reads' req/s measured
  # 1.19-1.28x in medians of four alternating pairs of runs, docs/performance_tuning.md "One
  # worker per core, across the instances".) The cores this process may run on: nproc without
  # the OpenMP variables, which it would otherwise obey.
  if [[ -z ${WEB_CONCURRENCY:-} ]]; then
    local instances cores
    instances=$(wc -w <<<"$STACK_APP_PORTS")
    ((instances > 0)) || die "STACK_APP_PORTS names no port"
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    WEB_CONCURRENCY=$((cores > instances ? cores / instances : 1))
    export WEB_CONCURRENCY
  fi
  # What every process gets, for `reload` to start its successors alike (SECRET_KEY: mode 600).
  (umask 077 && env -0 >"$ENV_FILE")
  PROCESS_ENV=()

  rm -rf "$DRAIN_DIR" # every instance in nginx's choice (a failed reload's drain file is stale)
  mkdir -p "$DRAIN_DIR"
  render nginx.conf "$NGINX_CONF"
  if ((EUID == 0)); then
    # Started by root, nginx would run its workers as nobody, who may not reach STACK_DIR (under
    # /root, or a 0700 temporary folder) for its temp files and cache. Every process of the
    # stack runs as the user who started it; so do nginx's workers.
    sed -i '1i user root;' "$NGINX_CONF"
  fi
  render prometheus.yml "$STACK_DIR/prometheus.yml"
  check_nginx_conf
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
    start_app "$name" "$port"
    urls+=("http://127.0.0.1:$port/healthz")
  done < <(app_names)
  start_worker
  start prometheus "$LOGS/prometheus.log" "$PROMETHEUS" --config.file="$STACK_DIR/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus-data" --storage.tsdb.retention.time=7d \
    --web.listen-address="127.0.0.1:$STACK_PROMETHEUS_PORT"
  urls+=("http://127.0.0.1:$STACK_WORKER_METRICS_PORT/metrics" "http://127.0.0.1:$STACK_PROMETHEUS_PORT/-/ready")
  wait_for "${urls[@]}"

  start nginx "$LOGS/nginx-error.log" "$NGINX" -c "$NGINX_CONF" -p "$STACK_DIR/" \
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

# -- reload ---------------------------------------------------------------------------------
#
# Migrations first (`flask db upgrade`, as docker/deploy.sh does: they must suit the running code
# too); if they fail, nothing else is touched. Then the app instances are restarted one at a
# time, each taken out of nginx's choice first, without reloading nginx:
#   1. the file DRAIN_DIR/appN is made (the instance restarted before it is put back: its file
#      removed first). From the next request on, nginx sends every request to the upstream group
#      ecommerce_without_appN (nginx.conf's $pool), which lacks the instance;
#   2. wait until no nginx process holds a connection to the instance: the requests on it
#      finish, and the idle keep-alive connections of the group "ecommerce" to it close after
#      the upstream keepalive_timeout (4 s). At most STACK_DRAIN_TIMEOUT: past nginx's
#      proxy_read_timeout only live event streams can be left; the instance's shutdown ends them
#      and their clients reconnect, to another instance;
#   3. SIGTERM to its gunicorn master, whose workers finish what they hold (graceful_timeout),
#      waited for (SIGKILL after STACK_STOP_TIMEOUT), as `down` does;
#   4. a new instance on the same port, with the environment `up` gave the first (ENV_FILE),
#      waited for until its /readyz answers 200 (it reaches the database and Redis); its PID
#      file is rewritten, so `status` and `down` know it.
# Then the last instance is put back, and the worker is restarted: SIGINT (it finishes its
# running jobs), a new consumer, waited for until its metrics answer; jobs queued meanwhile wait
# in Redis. nginx is neither reloaded nor restarted: a reload would close its old workers' idle
# keep-alive connections from clients, and a request sent on one at that moment would get no
# answer. Prometheus is not touched. If an instance does not become ready, the reload stops
# there, with that instance's drain file left (out of nginx's choice) and the others serving.

# drain NAME on|off: nginx sends no new request to instance NAME (on), or does again (off).
drain() {
  if [[ $2 == on ]]; then
    mkdir -p "$DRAIN_DIR"
    : >"$DRAIN_DIR/$1"
  else
    rm -f "$DRAIN_DIR/$1"
  fi
}

# chosen NAME: nginx may send requests to instance NAME (it has no drain file).
chosen() { [[ ! -e $DRAIN_DIR/$1 ]]; }

# nginx_connections PORT: how many TCP connections nginx's processes hold open to 127.0.0.1:PORT.
nginx_connections() {
  local master pid dirs=() inodes
  master=$(ours "$PIDS/nginx.pid") || die "nginx is not running (scripts/stack.sh status)"
  for pid in $(group_members "$master"); do dirs+=("/proc/$pid/fd"); done
  inodes=$({ find "${dirs[@]}" -maxdepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null || true; } | tr -dc '0-9\n')
  # /proc/net/tcp: rem_address is field 3 (hex, 127.0.0.1 is 0100007F), st field 4 (01
  # established, 02 connecting), inode field 10.
  awk -v peer="$(printf '0100007F:%04X' "$1")" '
    NR == FNR { ours[$1] = 1; next }
    FNR > 1 && $3 == peer && ($4 == "01" || $4 == "02") && ($10 in ours) { n++ }
    END { print n + 0 }' <(echo "$inodes") /proc/net/tcp
}

# nginx_drain NAME PORT: until nginx holds no connection to the instance, or STACK_DRAIN_TIMEOUT.
nginx_drain() {
  local open deadline=$((SECONDS + STACK_DRAIN_TIMEOUT))
  while open=$(nginx_connections "$2") && ((open > 0)); do
    if ((SECONDS >= deadline)); then
      say "$1: nginx still holds $open connection(s) to it after ${STACK_DRAIN_TIMEOUT}s (live event streams?): stopping it anyway"
      return 0
    fi
    sleep 0.1
  done
}

# load_env: PROCESS_ENV from ENV_FILE (what `up` gave the processes), and the worker's threads.
load_env() {
  local saved=() entry
  [[ -s $ENV_FILE ]] || die "no $ENV_FILE (the stack was started by an older scripts/stack.sh): restart it once (make stack-down; make stack)"
  mapfile -d '' -t saved <"$ENV_FILE"
  PROCESS_ENV=(-i "${saved[@]}")
  WORKERS=4
  for entry in "${saved[@]}"; do
    if [[ $entry == WORKERS=* ]]; then WORKERS=${entry#WORKERS=}; fi
  done
}

# restart NAME [PORT]: stop the process gracefully and start its successor (STARTED_PIDS[0]).
restart() {
  send_stop "$1"
  if [[ -n $STOP_PGID ]]; then reap "$STOP_PGID"; fi
  rm -f "$PIDS/$1.pid"
  STARTED_PIDS=()
  # Not the reload's lock (fd 9): the new process would hold it for as long as it runs.
  if [[ $1 == worker ]]; then start_worker 9>&-; else start_app "$1" "$2" 9>&-; fi
}

# ready NAME URL: until URL answers 200 while the new process runs.
ready() {
  "$PY" "$CHECKS" wait "$STACK_BOOT_TIMEOUT" "${STARTED_PIDS[0]}" "$2" && return 0
  tail -n 30 "$LOGS/$1.log" >&2
  die "$1 did not answer $2 within ${STACK_BOOT_TIMEOUT}s (its log: $LOGS/$1.log)"
}

reload_failed() {
  local left
  left=$(cd "$DRAIN_DIR" 2>/dev/null && printf '%s ' *)
  [[ $left != '* ' ]] || left=""
  say "reload failed; out of nginx's choice (a file in $DRAIN_DIR): ${left:-none}(scripts/stack.sh status; a new reload puts them back)"
}

# answers PORT: the instance on PORT answers /readyz with 200 (within 5 s).
answers() { "$PY" "$CHECKS" wait 5 "" "http://127.0.0.1:$1/readyz" 2>/dev/null; }

reload() {
  local names=() ports=() out_names=() out_ports=() name port i other previous="" serving
  local started=$SECONDS
  [[ -f $PORTS_FILE ]] || die "no stack in $STACK_DIR to reload (make stack)"
  ours "$PIDS/nginx.pid" >/dev/null || die "nginx is not running (scripts/stack.sh status): reload needs a running stack (make stack)"
  # The instances out of nginx's choice (left so by a failed reload) first: they serve no one.
  while read -r name port; do
    if chosen "$name"; then
      names+=("$name")
      ports+=("$port")
    else
      out_names+=("$name")
      out_ports+=("$port")
    fi
  done < <(app_names)
  names=("${out_names[@]}" "${names[@]}")
  ports=("${out_ports[@]}" "${ports[@]}")
  ((${#names[@]} >= 2)) || die "reload takes the instances out of nginx's choice one at a time: it needs two or more (STACK_APP_PORTS)"
  grep -q "upstream ecommerce_without_app1 " "$NGINX_CONF" \
    || die "$NGINX_CONF has no upstream groups for a reload (the stack was started by an older scripts/stack.sh): restart it once (make stack-down; make stack)"
  load_env
  exec 9>"$STACK_DIR/reload.lock"
  flock -n 9 || die "another reload of this stack is running"
  STACK_DRAIN_TIMEOUT=${STACK_DRAIN_TIMEOUT:-$((STACK_PROXY_READ_TIMEOUT + 5))}
  say "migrating ($LOGS/setup.log)"
  env "${PROCESS_ENV[@]}" "$BIN/flask" db upgrade >>"$LOGS/setup.log" 2>&1 \
    || { tail -n 30 "$LOGS/setup.log" >&2; die "migrations failed; nothing was restarted"; }
  trap reload_failed EXIT
  # One that is out but ready goes back in now.
  for i in "${!names[@]}"; do
    if ! chosen "${names[i]}" && answers "${ports[i]}"; then drain "${names[i]}" off; fi
  done

  for i in "${!names[@]}"; do
    name=${names[i]} port=${ports[i]}
    if [[ -n $previous ]]; then drain "$previous" off; fi
    # Another instance stays in nginx's choice, and is ready, while this one is out.
    serving=""
    for other in "${!names[@]}"; do
      if [[ ${names[other]} != "$name" ]] && chosen "${names[other]}" && answers "${ports[other]}"; then
        serving=${names[other]}
        break
      fi
    done
    [[ -n $serving ]] || die "$name: no other instance is in nginx's choice and ready; not taking $name out"
    drain "$name" on
    say "$name: out of nginx's choice; waiting for the requests nginx holds on it"
    # A request that chose its group just before the file appeared connects a moment later:
    # counted from then on.
    sleep 1
    nginx_drain "$name" "$port"
    restart "$name" "$port"
    ready "$name" "http://127.0.0.1:$port/readyz"
    say "$name: restarted (pid ${STARTED_PIDS[0]}), ready"
    previous=$name
  done
  drain "$previous" off
  say "every instance is back in nginx's choice"

  restart worker
  ready worker "http://127.0.0.1:$STACK_WORKER_METRICS_PORT/metrics"
  say "worker: restarted (pid ${STARTED_PIDS[0]})"
  trap - EXIT
  say "reloaded in $((SECONDS - started))s"
  status || true # what else may have exited is shown; the reload itself succeeded
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
      *)
        address="http://127.0.0.1:$(app_names | awk -v n="$name" '$1 == n {print $2}')"
        chosen "$name" || address+="  (out of nginx's choice; a reload puts it back)"
        ;;
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
  reload) reload ;;
  *) echo "usage: $0 up|down|status|reload" >&2; exit 2 ;;
esac
