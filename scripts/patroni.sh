#!/usr/bin/env bash
# A three-node PostgreSQL cluster managed by Patroni, with etcd as its consensus store, all on
# 127.0.0.1 and without Docker (docker-compose.yml has the same cluster in containers).
#
#   scripts/patroni.sh up            install etcd (apt-get) and Patroni (a virtualenv) if missing,
#                                    start etcd and the nodes, wait for a leader, a synchronous
#                                    standby and a streaming replica, create the database
#   scripts/patroni.sh down          stop the nodes (replicas first), then etcd
#   scripts/patroni.sh status        the members, their roles and lag
#   scripts/patroni.sh env           DATABASE_URL and DATABASE_REPLICA_URL for the app
#   scripts/patroni.sh crash [NODE]  SIGKILL a node's Patroni and its PostgreSQL together (the
#                                    leader by default): an unplanned failover
#   scripts/patroni.sh start NODE    start one stopped or crashed node again (it rejoins)
#   scripts/patroni.sh switchover [NODE]  a planned switchover (to NODE, or Patroni's choice)
#   scripts/patroni.sh clean         down, then delete the cluster's data (not the virtualenv)
#
# Environment (defaults):
#   PATRONI_DIR=run/patroni           data, WAL archive, configs, logs and PID files
#   PATRONI_VENV=run/patroni-venv     Patroni's virtualenv, shared by every cluster
#   PATRONI_PG_PORTS="5433 5434 5435" PATRONI_REST_PORTS="8008 8009 8010"
#   PATRONI_ETCD_PORT=2379            (its peer port is the next one)
#   PATRONI_SCOPE=ecommerce           the cluster's name in etcd
#   PATRONI_DATABASE=ecommerce        the app's database, created on the leader
#   PATRONI_BOOT_TIMEOUT=120 (s)      PATRONI_STOP_TIMEOUT=60 (s)
#   PATRONI_PYTHON=/usr/bin/python3   the interpreter of the virtualenv
#
# Facts this script is built on: PostgreSQL refuses to run as root, so when started by root the
# nodes run as the postgres user; that user must be able to read the virtualenv, so it is made
# with the system's python3 (a pyenv interpreter under /root is unreadable to it, and Patroni
# then waits in "bootstrap in progress" without a word). Patroni starts PostgreSQL in a session
# of its own: killing Patroni alone leaves a writable PostgreSQL behind (a split brain), which is
# why `crash` kills both.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PATRONI_DIR=${PATRONI_DIR:-run/patroni}
PATRONI_VENV=${PATRONI_VENV:-run/patroni-venv}
PATRONI_PG_PORTS=${PATRONI_PG_PORTS:-"5433 5434 5435"}
PATRONI_REST_PORTS=${PATRONI_REST_PORTS:-"8008 8009 8010"}
PATRONI_ETCD_PORT=${PATRONI_ETCD_PORT:-2379}
PATRONI_SCOPE=${PATRONI_SCOPE:-ecommerce}
PATRONI_DATABASE=${PATRONI_DATABASE:-ecommerce}
PATRONI_BOOT_TIMEOUT=${PATRONI_BOOT_TIMEOUT:-120}
PATRONI_STOP_TIMEOUT=${PATRONI_STOP_TIMEOUT:-60}
PATRONI_PYTHON=${PATRONI_PYTHON:-/usr/bin/python3}

[[ -n $PATRONI_DIR ]] || { echo "patroni: PATRONI_DIR is empty" >&2; exit 2; }
[[ $PATRONI_DIR == /* ]] || PATRONI_DIR="$ROOT/$PATRONI_DIR"
[[ $PATRONI_VENV == /* ]] || PATRONI_VENV="$ROOT/$PATRONI_VENV"
PATRONI_DIR=${PATRONI_DIR%/}
PIDS="$PATRONI_DIR/pids"
LOGS="$PATRONI_DIR/logs"
ARCHIVE="$PATRONI_DIR/wal_archive"
PORTS_FILE="$PATRONI_DIR/ports.env"
CLUSTER="$ROOT/patroni/cluster.py"
ETCD=$(command -v etcd || echo /usr/bin/etcd)

say() { printf 'patroni: %s\n' "$*"; }
die() { printf 'patroni: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

# A cluster already set up remembers its ports: `status`, `crash` and `down` act on it even
# from a shell with other settings.
if [[ ${1:-} != up && -f $PORTS_FILE ]]; then
  # shellcheck source=/dev/null
  source "$PORTS_FILE"
fi
read -ra PG_PORTS <<<"$PATRONI_PG_PORTS"
read -ra REST_PORTS <<<"$PATRONI_REST_PORTS"
((${#PG_PORTS[@]} == ${#REST_PORTS[@]})) || die "PATRONI_PG_PORTS and PATRONI_REST_PORTS differ in length"
ETCD_PEER_PORT=$((PATRONI_ETCD_PORT + 1))

rest_urls() {
  local port
  for port in "${REST_PORTS[@]}"; do printf 'http://127.0.0.1:%s ' "$port"; done
}

node_names() {
  local i
  for i in "${!PG_PORTS[@]}"; do echo "node$((i + 1))"; done
}

node_index() { echo $((${1#node} - 1)); }

cluster() { "$PATRONI_VENV/bin/python" "$CLUSTER" "$@"; }

# The user the nodes run as: postgres when started by root (PostgreSQL refuses root).
node_user() { if ((EUID == 0)); then echo postgres; else id -un; fi; }
if ((EUID == 0)); then RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups --); else RUNAS=(); fi

# -- installation ---------------------------------------------------------------------------

pg_bin_dir() {
  local dir dirs=()
  for dir in /usr/lib/postgresql/*/bin; do [[ -x $dir/initdb && -x $dir/pg_ctl ]] && dirs+=("$dir"); done
  if ((${#dirs[@]})); then
    printf '%s\n' "${dirs[@]}" | sort -t/ -k5 -n -r | head -n 1
    return 0
  fi
  die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
}

ensure_installed() {
  [[ -x $ETCD ]] || { apt_install etcd-server; ETCD=$(command -v etcd || echo /usr/bin/etcd); }
  [[ -x $PATRONI_PYTHON ]] || apt_install python3 python3-venv
  local stamp="$PATRONI_VENV/.requirements" wanted
  wanted=$(cat "$ROOT/patroni/requirements.txt")
  if [[ ! -x $PATRONI_VENV/bin/patroni || ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    say "installing Patroni into $PATRONI_VENV ($PATRONI_PYTHON)"
    rm -rf "$PATRONI_VENV"
    "$PATRONI_PYTHON" -m venv "$PATRONI_VENV" || { apt_install python3-venv && "$PATRONI_PYTHON" -m venv "$PATRONI_VENV"; }
    "$PATRONI_VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/patroni/requirements.txt" \
      || die "pip could not install patroni/requirements.txt"
    echo "$wanted" >"$stamp"
  fi
  local user
  user=$(node_user)
  as_node_user test -r "$PATRONI_VENV/bin/patroni" \
    || die "$user cannot read $PATRONI_VENV: put the repository (or PATRONI_VENV) where $user can read it"
}

# as_node_user COMMAND...: COMMAND as the nodes' user (setpriv execs it: the PID stays its own).
as_node_user() { "${RUNAS[@]}" "$@"; }

# -- configuration --------------------------------------------------------------------------

render_node() {
  local name=$1 pg_port=$2 rest_port=$3 node_dir="$PATRONI_DIR/$1" bin_dir=$4
  sed -e "s|@NAME@|$name|g" -e "s|@SCOPE@|$PATRONI_SCOPE|g" \
    -e "s|@PG_PORT@|$pg_port|g" -e "s|@REST_PORT@|$rest_port|g" \
    -e "s|@ETCD_HOSTS@|127.0.0.1:$PATRONI_ETCD_PORT|g" \
    -e "s|@DATA_DIR@|$node_dir/data|g" -e "s|@NODE_DIR@|$node_dir|g" \
    -e "s|@BIN_DIR@|$bin_dir|g" -e "s|@ARCHIVE_DIR@|$ARCHIVE|g" \
    -e "s|@SUPERUSER_PASSWORD@|$(secret superuser)|g" \
    -e "s|@REPLICATION_PASSWORD@|$(secret replication)|g" \
    -e "s|@REWIND_PASSWORD@|$(secret rewind)|g" \
    "$ROOT/patroni/patroni.yml.in" >"$PATRONI_DIR/$name.yml"
  chmod 600 "$PATRONI_DIR/$name.yml"
  chown "$(node_user)" "$PATRONI_DIR/$name.yml"
}

# The cluster's passwords, made once per cluster (the local pg_hba trusts 127.0.0.1 anyway).
secret() {
  local file="$PATRONI_DIR/secrets/$1"
  if [[ ! -s $file ]]; then
    mkdir -p "$PATRONI_DIR/secrets"
    chmod 700 "$PATRONI_DIR/secrets"
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$file")
  fi
  cat "$file"
}

# -- processes ------------------------------------------------------------------------------

postmaster_pid() {
  local file="$PATRONI_DIR/$1/data/postmaster.pid" pid
  [[ -f $file ]] || return 1
  read -r pid <"$file" || return 1
  [[ -d /proc/$pid ]] && echo "$pid"
}

start_node() {
  local name=$1 i
  i=$(node_index "$name")
  [[ -f $PATRONI_DIR/$name.yml ]] || die "no configuration for $name (run up first)"
  if ours "$PIDS/$name.pid" >/dev/null; then
    say "$name already runs"
    return 0
  fi
  start "$name" "$LOGS/$name.log" "${RUNAS[@]}" env -i PATH=/usr/bin:/bin \
    HOME="$PATRONI_DIR/$name" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    "$PATRONI_VENV/bin/patroni" "$PATRONI_DIR/$name.yml"
  say "started $name (PostgreSQL 127.0.0.1:${PG_PORTS[$i]}, REST 127.0.0.1:${REST_PORTS[$i]})"
}

# stop_node NAME: SIGTERM to Patroni, which stops its PostgreSQL (fast shutdown) and exits.
stop_node() {
  local name=$1 pid deadline
  if pid=$(ours "$PIDS/$name.pid"); then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + PATRONI_STOP_TIMEOUT))
    while ours "$PIDS/$name.pid" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if ours "$PIDS/$name.pid" >/dev/null; then
      say "$name did not stop in ${PATRONI_STOP_TIMEOUT}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  # A PostgreSQL left without its Patroni (killed, or Patroni crashed) is stopped too.
  if pid=$(postmaster_pid "$name"); then
    say "stopping the PostgreSQL of $name (pid $pid)"
    kill -INT "$pid" 2>/dev/null || true
    deadline=$((SECONDS + PATRONI_STOP_TIMEOUT))
    while postmaster_pid "$name" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if pid=$(postmaster_pid "$name"); then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$PIDS/$name.pid"
}

# crash NAME: SIGKILL Patroni, PostgreSQL's postmaster and every backend at the same instant.
# The processes are found by their command lines as well as by the PID files, and PostgreSQL's
# children (which run in sessions of their own) as the postmaster's children.
crash_node() {
  local name=$1 victims=() found=() pid
  mapfile -t found < <(pgrep -f -- "bin/patroni $PATRONI_DIR/$name.yml" || true)
  victims+=("${found[@]}")
  if pid=$(ours "$PIDS/$name.pid"); then victims+=("$pid"); fi
  if pid=$(postmaster_pid "$name"); then
    mapfile -t found < <(pgrep -P "$pid" || true)
    victims+=("$pid" "${found[@]}")
  fi
  ((${#victims[@]})) || die "$name is not running"
  mapfile -t victims < <(printf '%s\n' "${victims[@]}" | sort -u)
  kill -KILL "${victims[@]}" 2>/dev/null || true
  say "crashed $name: SIGKILL to ${#victims[@]} processes (Patroni, the postmaster and its children)"
}

start_etcd() {
  if ours "$PIDS/etcd.pid" >/dev/null; then return 0; fi
  mkdir -p "$PATRONI_DIR/etcd"
  start etcd "$LOGS/etcd.log" "$ETCD" --name "$PATRONI_SCOPE-etcd" --data-dir "$PATRONI_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$PATRONI_ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$PATRONI_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "$PATRONI_SCOPE-etcd=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new
  local deadline=$((SECONDS + 30))
  until "$PATRONI_VENV/bin/python" - "$PATRONI_ETCD_PORT" <<'PY' 2>/dev/null; do
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as r:
    sys.exit(0 if b"true" in r.read() else 1)
PY
    ((SECONDS < deadline)) || { tail -n 20 "$LOGS/etcd.log" >&2; die "etcd did not become healthy"; }
    ours "$PIDS/etcd.pid" >/dev/null || { tail -n 20 "$LOGS/etcd.log" >&2; die "etcd exited"; }
    sleep 0.3
  done
}

check_ports_free() {
  "$PATRONI_VENV/bin/python" - "$@" <<'PY' || exit 1
import socket, sys
busy = []
for port in sys.argv[1:]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(port)))
        except OSError:
            busy.append(port)
if busy:
    sys.exit("patroni: ports already in use: " + " ".join(busy))
PY
}

# -- commands -------------------------------------------------------------------------------

up() {
  local name running=0
  for name in etcd $(node_names); do ours "$PIDS/$name.pid" >/dev/null 2>&1 && running=$((running + 1)); done
  ((running == 0)) || die "the cluster already runs ($running processes; scripts/patroni.sh status)"
  ensure_installed
  check_ports_free "${PG_PORTS[@]}" "${REST_PORTS[@]}" "$PATRONI_ETCD_PORT" "$ETCD_PEER_PORT"
  local bin_dir user
  bin_dir=$(pg_bin_dir)
  user=$(node_user)
  mkdir -p "$PATRONI_DIR" "$PIDS" "$LOGS" "$ARCHIVE"
  chmod 755 "$PATRONI_DIR"
  chown "$user" "$ARCHIVE"
  printf 'PATRONI_PG_PORTS=%q\nPATRONI_REST_PORTS=%q\nPATRONI_ETCD_PORT=%q\nPATRONI_SCOPE=%q\nPATRONI_DATABASE=%q\n' \
    "$PATRONI_PG_PORTS" "$PATRONI_REST_PORTS" "$PATRONI_ETCD_PORT" "$PATRONI_SCOPE" "$PATRONI_DATABASE" >"$PORTS_FILE"
  local i
  for i in "${!PG_PORTS[@]}"; do
    name="node$((i + 1))"
    mkdir -p "$PATRONI_DIR/$name"
    chown "$user" "$PATRONI_DIR/$name"
    chmod 700 "$PATRONI_DIR/$name"
    render_node "$name" "${PG_PORTS[$i]}" "${REST_PORTS[$i]}" "$bin_dir"
  done

  trap 'say "start failed: stopping what was started"; down >&2' EXIT
  start_etcd
  for name in $(node_names); do start_node "$name"; done
  say "waiting for a leader, a synchronous standby and streaming replicas (up to ${PATRONI_BOOT_TIMEOUT}s)"
  # shellcheck disable=SC2046
  if ! cluster wait "$PATRONI_BOOT_TIMEOUT" $(rest_urls); then
    for name in etcd $(node_names); do
      echo "--- $LOGS/$name.log (last lines)" >&2
      tail -n 15 "$LOGS/$name.log" >&2 || true
    done
    die "the cluster did not become healthy"
  fi
  create_database
  trap - EXIT
  say "up"
  print_env
}

create_database() {
  local leader_port
  # shellcheck disable=SC2046
  read -r _ leader_port < <(cluster leader $(rest_urls)) || die "no leader"
  local psql
  psql="$(pg_bin_dir)/psql"
  if [[ -z $(as_node_user "$psql" -h 127.0.0.1 -p "$leader_port" -U postgres -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = '$PATRONI_DATABASE'") ]]; then
    as_node_user "$psql" -h 127.0.0.1 -p "$leader_port" -U postgres -d postgres -qc \
      "CREATE DATABASE \"$PATRONI_DATABASE\"" || die "could not create database $PATRONI_DATABASE"
    say "created database $PATRONI_DATABASE"
  fi
}

hosts() {
  local port list=()
  for port in "${PG_PORTS[@]}"; do list+=("127.0.0.1:$port"); done
  (IFS=,; echo "${list[*]}")
}

# Shell-quoted, so that `eval "$(scripts/patroni.sh env)"` sets them.
print_env() {
  echo "DATABASE_URL='postgresql://postgres@$(hosts)/$PATRONI_DATABASE?target_session_attrs=read-write'"
  echo "DATABASE_REPLICA_URL='postgresql://postgres@$(hosts)/$PATRONI_DATABASE?target_session_attrs=prefer-standby&load_balance_hosts=random'"
}

down() {
  local name names=() leader_name=""
  # shellcheck disable=SC2046
  read -r leader_name _ < <(cluster leader $(rest_urls) 2>/dev/null) || true
  # Replicas first, the leader last: no failover is started by the shutdown itself.
  for name in $(node_names); do [[ $name != "$leader_name" ]] && names+=("$name"); done
  [[ -n $leader_name ]] && names+=("$leader_name")
  for name in "${names[@]}"; do
    if [[ -f $PIDS/$name.pid ]] || postmaster_pid "$name" >/dev/null; then
      say "stopping $name"
      stop_node "$name"
    fi
  done
  local pid
  if pid=$(ours "$PIDS/etcd.pid"); then
    say "stopping etcd"
    kill -TERM "$pid" 2>/dev/null || true
    wait_groups 20 "$pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/etcd.pid"
  return 0
}

status() {
  local name pid state
  printf '%-8s %-8s %s\n' PROCESS PID STATE
  for name in etcd $(node_names); do
    if pid=$(ours "$PIDS/$name.pid"); then state=running; else pid=-; state=stopped; fi
    printf '%-8s %-8s %s\n' "$name" "$pid" "$state"
  done
  echo
  # shellcheck disable=SC2046
  cluster list $(rest_urls)
}

case ${1:-} in
  up) up ;;
  down) down && say "down" ;;
  status) status ;;
  env) print_env ;;
  crash)
    name=${2:-}
    # shellcheck disable=SC2046
    [[ -n $name ]] || read -r name _ < <(cluster leader $(rest_urls)) || die "no leader to crash"
    crash_node "$name"
    ;;
  start)
    [[ -n ${2:-} ]] || die "usage: $0 start NODE"
    start_node "$2"
    ;;
  switchover)
    # shellcheck disable=SC2046
    if [[ -n ${2:-} ]]; then cluster switchover $(rest_urls) --candidate "$2"; else cluster switchover $(rest_urls); fi
    ;;
  clean)
    down
    rm -rf "${PATRONI_DIR:?}"
    say "deleted $PATRONI_DIR"
    ;;
  *) echo "usage: $0 up|down|status|env|crash [NODE]|start NODE|switchover [NODE]|clean" >&2; exit 2 ;;
esac
