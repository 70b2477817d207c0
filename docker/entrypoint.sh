#!/bin/sh
# The container's entrypoint: one image, three roles.
#
#   web       wait for the database; apply the migrations (and seed) unless MIGRATE_ON_START=false;
#             then exec gunicorn (gunicorn.conf.py: HOST, PORT, WEB_CONCURRENCY, ...)
#   worker    wait for the database; exec the Huey consumer with WORKERS threads
#   migrate   wait for the database; apply the migrations (and seed); exit
#   anything else is executed as given (flask users create-admin ..., sh, python ...)
#
# Its own variables (every other one is the application's, see ecommerce/config.py):
#   MIGRATE_ON_START   web role: run `flask db upgrade` before gunicorn (default true). With
#                      several web containers, run the migrate role once and set it to false.
#   SEED_ON_START      after the migrations: `flask seed --products SEED_PRODUCTS` (default false)
#   SEED_PRODUCTS      products the seed tops the catalog up to (default 1000)
#   DB_WAIT_TIMEOUT    seconds to wait for the database before giving up (default 60)
#   WORKERS            worker role: consumer threads (default 4, as `make worker`)
#   PROMETHEUS_MULTIPROC_DIR  web role: where gunicorn's workers write their metrics (default
#                      /tmp/prometheus-multiproc; emptied at start; mount a tmpfs on /tmp)
#   WORKER_METRICS_PORT       worker role: its job metrics port (WORKER_METRICS_HOST: bind address)
set -eu


is_true() {
    case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

# PostgreSQL accepts connections (a fresh container is still initialising for a few seconds).
# SQLite needs no wait. The URL is never printed: it carries the password.
wait_for_database() {
    python - <<'PY'
import os
import sys
import time

url = os.environ.get("DATABASE_URL", "")
for prefix in ("postgresql+psycopg2://", "postgres://"):
    if url.startswith(prefix):
        url = "postgresql://" + url[len(prefix):]
if not url.startswith("postgresql://"):
    sys.exit(0)

import psycopg2

deadline = time.monotonic() + float(os.environ.get("DB_WAIT_TIMEOUT") or 60)
while True:
    try:
        psycopg2.connect(url, connect_timeout=3).close()
        break
    except psycopg2.OperationalError as error:
        if time.monotonic() >= deadline:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
            sys.exit(f"entrypoint: the database did not answer in time ({reason})")
        time.sleep(1)
PY
}

migrate() {
    log "applying migrations"
    flask db upgrade
    if is_true "${SEED_ON_START:-false}"; then
        log "seeding the demo catalog"
        flask seed --products "${SEED_PRODUCTS:-1000}"
    fi
}

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
    web)
        wait_for_database
        if is_true "${MIGRATE_ON_START:-true}"; then
            migrate
        fi
        # gunicorn's workers share their metrics through this folder; files left by an earlier
        # run would count dead processes, so it starts empty.
        PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/prometheus-multiproc}"
        export PROMETHEUS_MULTIPROC_DIR
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
        log "starting gunicorn"
        exec gunicorn --config gunicorn.conf.py wsgi:app "$@"
        ;;
    worker)
        # One process: it serves its own registry, not gunicorn's multiprocess files.
        unset PROMETHEUS_MULTIPROC_DIR
        wait_for_database
        log "starting the Huey consumer"
        exec huey_consumer ecommerce.worker.huey -k thread -w "${WORKERS:-4}" "$@"
        ;;
    migrate)
        wait_for_database
        migrate
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
