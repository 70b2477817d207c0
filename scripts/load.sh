#!/usr/bin/env bash
# `make load`: the JMeter plans of jmeter/ against the stack (or any host and port), then the
# report (tables and PNG charts) from their CSV results.
#
#   scripts/load.sh            run every plan, write the report into LOAD_OUT
#
# Environment (defaults):
#   LOAD_HOST=127.0.0.1 LOAD_PORT=8080   the target; when nothing answers there and it is the
#                                        default, `scripts/stack.sh up` starts the stack (with
#                                        AUTH_RATE_LIMIT raised for the login plans) and it is
#                                        stopped again afterwards
#   LOAD_PLANS="catalog orders login journey"
#   LOAD_THREADS (each plan's own default)  LOAD_RAMPUP=20  LOAD_DURATION=60 (s per plan)
#   LOAD_THINK_MS=200 (login: LOAD_LOGIN_THINK_MS=600, under nginx's 10 r/s per address on auth)
#   LOAD_DATA    a folder with users.csv, products.csv, categories.csv; unset: made by
#                `flask seed --load-customers ... --csv-dir run/load/data` on DATABASE_URL
#                (default: the stack's database)
#   LOAD_CUSTOMERS=200 LOAD_ORDERS=50    what that seed makes
#   LOAD_OUT=docs/load                   where the report goes
#   JMETER       a JMeter 5.x `jmeter` to run instead of Debian's 2.13 (installed with apt-get
#                and started through jmeter/launcher/PermissiveJMeter.java)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf 'load: %s\n' "$*"; }
die() { printf 'load: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

LOAD_HOST=${LOAD_HOST:-127.0.0.1}
LOAD_PORT=${LOAD_PORT:-8080}
LOAD_PLANS=${LOAD_PLANS:-"catalog orders login journey"}
LOAD_RAMPUP=${LOAD_RAMPUP:-20}
LOAD_DURATION=${LOAD_DURATION:-60}
LOAD_THINK_MS=${LOAD_THINK_MS:-200}
LOAD_LOGIN_THINK_MS=${LOAD_LOGIN_THINK_MS:-600}
LOAD_CUSTOMERS=${LOAD_CUSTOMERS:-200}
LOAD_ORDERS=${LOAD_ORDERS:-50}
LOAD_OUT=${LOAD_OUT:-docs/load}
RUN_DIR="$ROOT/run/load/$(date -u +%Y%m%dT%H%M%SZ)"
BIN="$ROOT/.venv/bin"
JMETER_HOME=${JMETER_HOME:-/usr/share/jmeter}
CLASSES="$ROOT/run/jmeter/classes"

[[ -x $BIN/python ]] || die "no virtualenv in .venv: run 'make install-dev' (make load does)"

# -- JMeter ----------------------------------------------------------------------------------

jmeter_command() {
  if [[ -n ${JMETER:-} ]]; then
    JMETER_CMD=("$JMETER")
    return
  fi
  [[ -f $JMETER_HOME/lib/ext/ApacheJMeter_http.jar ]] || apt_install jmeter jmeter-http
  command -v javac >/dev/null || apt_install default-jdk-headless
  local source="$ROOT/jmeter/launcher/PermissiveJMeter.java"
  if [[ ! -f $CLASSES/PermissiveJMeter.class || $source -nt $CLASSES/PermissiveJMeter.class ]]; then
    mkdir -p "$CLASSES"
    javac -d "$CLASSES" -cp "$JMETER_HOME/bin/ApacheJMeter.jar" "$source" || die "javac failed on $source"
  fi
  JMETER_CMD=(java -cp "$CLASSES:$JMETER_HOME/bin/ApacheJMeter.jar" -Djmeter.home="$JMETER_HOME" PermissiveJMeter)
}

# -- the target --------------------------------------------------------------------------------

answers() { "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }

target_up() {
  local url="http://$LOAD_HOST:$LOAD_PORT/healthz"
  answers "$url" && return 0
  [[ $LOAD_HOST == 127.0.0.1 && $LOAD_PORT == "${STACK_PORT:-8080}" ]] || die "nothing answers at $url"
  say "nothing answers at $url: starting the stack (make stack)"
  AUTH_RATE_LIMIT=${AUTH_RATE_LIMIT:-100000/minute} STACK_PORT=$LOAD_PORT scripts/stack.sh up
  trap 'say "stopping the stack it started"; scripts/stack.sh down' EXIT
}

test_data() {
  if [[ -n ${LOAD_DATA:-} ]]; then
    DATA=$LOAD_DATA
    return
  fi
  DATA="$ROOT/run/load/data"
  export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ecommerce_stack}
  export FLASK_APP=wsgi.py
  say "test data: $LOAD_CUSTOMERS customers with $LOAD_ORDERS orders each, CSV files in $DATA"
  "$BIN/flask" seed --load-customers "$LOAD_CUSTOMERS" --load-orders "$LOAD_ORDERS" --csv-dir "$DATA" \
    >"$RUN_DIR/seed.log" 2>&1 || { tail -n 20 "$RUN_DIR/seed.log" >&2; die "flask seed failed"; }
}

# -- run ----------------------------------------------------------------------------------------

mkdir -p "$RUN_DIR"
jmeter_command
target_up
test_data
results=()
for name in $LOAD_PLANS; do
  [[ -f jmeter/$name.jmx ]] || die "no plan jmeter/$name.jmx"
  think=$LOAD_THINK_MS
  [[ $name == login ]] && think=$LOAD_LOGIN_THINK_MS
  props=(-Jhost="$LOAD_HOST" -Jport="$LOAD_PORT" -Jrampup="$LOAD_RAMPUP" -Jduration="$LOAD_DURATION"
    -Jthink_ms="$think" -Jdata="$DATA" -Jjmeterengine.nongui.port=0
    -Jjmeter.save.saveservice.output_format=csv -Jjmeter.save.saveservice.print_field_names=true)
  [[ -n ${LOAD_THREADS:-} ]] && props+=(-Jthreads="$LOAD_THREADS")
  say "plan $name: ${LOAD_DURATION}s (ramp-up ${LOAD_RAMPUP}s) against $LOAD_HOST:$LOAD_PORT"
  "${JMETER_CMD[@]}" -n -t "jmeter/$name.jmx" -l "$RUN_DIR/$name.jtl" -j "$RUN_DIR/$name.log" "${props[@]}" \
    >"$RUN_DIR/$name.out" 2>&1 || { tail -n 20 "$RUN_DIR/$name.out" >&2; die "JMeter failed on $name"; }
  grep -E '^summary =' "$RUN_DIR/$name.out" | tail -n 1 || true
  results+=("$RUN_DIR/$name.jtl")
done

"$BIN/python" jmeter/report.py "${results[@]}" --out "$LOAD_OUT" --warmup "$LOAD_RAMPUP" --title "make load"
say "report: $LOAD_OUT/report.md (raw results in $RUN_DIR)"
