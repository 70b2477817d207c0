#!/bin/sh
# The entrypoint of one PostgreSQL node of docker-compose.yml (pg1, pg2, pg3): Patroni, with etcd
# as its consensus store. Every node renders the SAME template as scripts/patroni.sh,
# patroni/patroni.yml.in, from its environment, then runs Patroni on it.
#
#   patroni            (default) render the configuration into CONFIG_FILE, exec Patroni on it
#   create-database URL  Patroni's bootstrap.post_bootstrap hook (below); URL is the superuser
#                      connection Patroni passes as the last argument
#   anything else      executed as given: docker compose exec pg1 patronictl -c /etc/patroni/patroni.yml list
#
# Environment (defaults):
#   NODE_NAME              required: the member's name, also its host name on the compose network
#   NODE_HOST=$NODE_NAME   the address the other nodes and the apps reach this node at
#   CLUSTER_SCOPE=ecommerce  the cluster's name in etcd
#   PG_PORT=5432  REST_PORT=8008   PostgreSQL and Patroni's REST API (GET /health)
#   ETCD_HOSTS=etcd:2379
#   DATA_DIR=/var/lib/postgresql/data/pgdata    on the node's own named volume
#   NODE_DIR=/var/run/postgresql                unix socket and pgpass
#   ARCHIVE_DIR=/var/lib/postgresql/wal_archive the WAL archive, one named volume shared by the nodes
#   BIN_DIR=/usr/lib/postgresql/$PG_MAJOR/bin
#   SUPERUSER_PASSWORD, REPLICATION_PASSWORD, REWIND_PASSWORD   required
#   APP_DATABASE=ecommerce the app's database, created by the post_bootstrap hook
#   HBA_ADDRESS=samenet    who may connect over the network (a pg_hba address field)
#   CONFIG_TEMPLATE=/etc/patroni/patroni.yml.in  CONFIG_FILE=/etc/patroni/patroni.yml
#
# What the rendering changes besides the @PLACEHOLDERS@ (GNU sed, as in the Debian image), because
# the template is written for scripts/patroni.sh, where every node is on 127.0.0.1:
#   - `listen: 127.0.0.1:` (REST API and PostgreSQL) becomes `listen: 0.0.0.0:`: the other nodes,
#     the apps and the health check reach the node from other containers;
#   - `connect_address: 127.0.0.1:` becomes `connect_address: NODE_HOST:`, the address Patroni
#     publishes in etcd: what replicas stream from and what `patronictl` calls;
#   - after the template's pg_hba lines (local and 127.0.0.1 stay trusted: only this container's
#     own processes), two lines open the compose network with passwords (scram-sha-256):
#       host replication replicator HBA_ADDRESS scram-sha-256   (replicas streaming and cloning)
#       host all all HBA_ADDRESS scram-sha-256                  (the apps, pg_rewind, psql)
#     `samenet` is PostgreSQL's "any subnet this server is attached to": the compose network,
#     whatever subnet Docker gave it;
#   - `bootstrap:` gets `post_bootstrap: <this script> create-database` (why, see below).
# The passwords are written as single-quoted YAML strings, so any character but a newline is safe
# in the file (DATABASE_URL still wants a URL-safe POSTGRES_PASSWORD). Should the template change
# so that one of these edits no longer applies, the node refuses to start and says which.
#
# Who creates the app's database: this hook, not the app's entrypoint. Patroni runs post_bootstrap
# exactly once per cluster, on the node that ran initdb, before that node takes the leader key; the
# replicas are cloned from it afterwards, so every node has the database from its first start, and
# pg1..pg3 only turn healthy (which the apps wait for) once it exists. Should the hook fail, Patroni
# abandons the bootstrap (the data directory is set aside, the initialize key released) and the
# node, restarted by compose, or another node tries again: a cluster never comes up without it.
# The app's entrypoint would instead run in every app container, race its siblings, need to find
# the leader first and to connect to a database other than its own; and the one-shot migrate job
# alone would leave `docker compose up app1` without it. The one case the hook misses, a cluster
# made before the hook existed, is a one-liner (whichever node leads):
#   docker compose exec pg1 sh -c 'PGPASSWORD="$SUPERUSER_PASSWORD" patroni-entrypoint create-database \
#     "postgresql://postgres@pg1,pg2,pg3/postgres?target_session_attrs=read-write"'
set -eu

CONFIG_TEMPLATE=${CONFIG_TEMPLATE:-/etc/patroni/patroni.yml.in}
CONFIG_FILE=${CONFIG_FILE:-/etc/patroni/patroni.yml}
BIN_DIR=${BIN_DIR:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin}
APP_DATABASE=${APP_DATABASE:-ecommerce}

die() {
    printf 'patroni-entrypoint: %s\n' "$*" >&2
    exit 1
}

# must_match NAME VALUE PATTERN: refuse values that would break the YAML or the sed expressions.
must_match() {
    printf '%s' "$2" | grep -Eqx "$3" || die "$1 must match $3 (got '$2')"
}

# A value as a single-quoted YAML scalar, escaped for the replacement side of sed's s|||.
yaml_quoted() {
    printf "'%s'" "$(printf '%s' "$1" | sed -e "s/'/''/g")" | sed -e 's/[\\|&]/\\&/g'
}

render() {
    NODE_NAME=${NODE_NAME:?set NODE_NAME (pg1, pg2, pg3)}
    NODE_HOST=${NODE_HOST:-$NODE_NAME}
    CLUSTER_SCOPE=${CLUSTER_SCOPE:-ecommerce}
    PG_PORT=${PG_PORT:-5432}
    REST_PORT=${REST_PORT:-8008}
    ETCD_HOSTS=${ETCD_HOSTS:-etcd:2379}
    DATA_DIR=${DATA_DIR:-/var/lib/postgresql/data/pgdata}
    NODE_DIR=${NODE_DIR:-/var/run/postgresql}
    ARCHIVE_DIR=${ARCHIVE_DIR:-/var/lib/postgresql/wal_archive}
    HBA_ADDRESS=${HBA_ADDRESS:-samenet}
    : "${SUPERUSER_PASSWORD:?set SUPERUSER_PASSWORD}"
    : "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
    : "${REWIND_PASSWORD:?set REWIND_PASSWORD}"

    name='[A-Za-z0-9][A-Za-z0-9_.-]*'
    must_match NODE_NAME "$NODE_NAME" "$name"
    must_match NODE_HOST "$NODE_HOST" "$name"
    must_match CLUSTER_SCOPE "$CLUSTER_SCOPE" "$name"
    for port in "$PG_PORT" "$REST_PORT"; do
        must_match port "$port" '[1-9][0-9]{0,4}'
        [ "$port" -le 65535 ] || die "port $port is out of range"
    done
    must_match ETCD_HOSTS "$ETCD_HOSTS" '[A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*'
    must_match HBA_ADDRESS "$HBA_ADDRESS" '[A-Za-z0-9_.:/-]+'
    for dir in "$DATA_DIR" "$NODE_DIR" "$ARCHIVE_DIR" "$BIN_DIR"; do
        must_match directory "$dir" '/[A-Za-z0-9_./-]*'
    done
    for password in "$SUPERUSER_PASSWORD" "$REPLICATION_PASSWORD" "$REWIND_PASSWORD"; do
        case $password in *'
'*) die "a password must be one line" ;;
        esac
    done
    [ -r "$CONFIG_TEMPLATE" ] || die "no template at $CONFIG_TEMPLATE"
    [ -w "$ARCHIVE_DIR" ] || die "$ARCHIVE_DIR is not writable by $(id -un) (the shared WAL archive volume)"

    self=$(readlink -f "$0")
    must_match "this script's path" "$self" '/[A-Za-z0-9_./-]*'
    hook="$self create-database"
    hba_replication="    - host replication replicator $HBA_ADDRESS scram-sha-256"
    hba_all="    - host all all $HBA_ADDRESS scram-sha-256"

    (
        umask 077
        sed -e "s|@NAME@|$NODE_NAME|g" -e "s|@SCOPE@|$CLUSTER_SCOPE|g" \
            -e "s|@PG_PORT@|$PG_PORT|g" -e "s|@REST_PORT@|$REST_PORT|g" \
            -e "s|@ETCD_HOSTS@|$ETCD_HOSTS|g" \
            -e "s|@DATA_DIR@|$DATA_DIR|g" -e "s|@NODE_DIR@|$NODE_DIR|g" \
            -e "s|@BIN_DIR@|$BIN_DIR|g" -e "s|@ARCHIVE_DIR@|$ARCHIVE_DIR|g" \
            -e "s|@SUPERUSER_PASSWORD@|$(yaml_quoted "$SUPERUSER_PASSWORD")|g" \
            -e "s|@REPLICATION_PASSWORD@|$(yaml_quoted "$REPLICATION_PASSWORD")|g" \
            -e "s|@REWIND_PASSWORD@|$(yaml_quoted "$REWIND_PASSWORD")|g" \
            -e "s|^\(  listen: \)127\.0\.0\.1:|\10.0.0.0:|" \
            -e "s|^\(  connect_address: \)127\.0\.0\.1:|\1$NODE_HOST:|" \
            -e "s|^    - host replication replicator 127\.0\.0\.1/32 trust\$|&\n$hba_replication\n$hba_all|" \
            -e "s|^bootstrap:\$|&\n  post_bootstrap: $hook|" \
            "$CONFIG_TEMPLATE" >"$CONFIG_FILE.next"
    )

    # Every edit above must have applied exactly where expected.
    unrendered=$(grep -o '@[A-Z_]*@' "$CONFIG_FILE.next" | sort -u | tr '\n' ' ' || true)
    [ -z "$unrendered" ] || die "$CONFIG_TEMPLATE has placeholders this entrypoint does not know: $unrendered"
    [ "$(grep -c "^  listen: 0\.0\.0\.0:" "$CONFIG_FILE.next")" = 2 ] \
        || die "$CONFIG_TEMPLATE: expected two 'listen: 127.0.0.1:' lines (restapi, postgresql)"
    [ "$(grep -c "^  connect_address: $NODE_HOST:" "$CONFIG_FILE.next")" = 2 ] \
        || die "$CONFIG_TEMPLATE: expected two 'connect_address: 127.0.0.1:' lines"
    grep -qxF "$hba_all" "$CONFIG_FILE.next" \
        || die "$CONFIG_TEMPLATE: no 'host replication replicator 127.0.0.1/32 trust' line to add the network's after"
    grep -qxF "  post_bootstrap: $hook" "$CONFIG_FILE.next" || die "$CONFIG_TEMPLATE: no 'bootstrap:' section"
    ! grep -Eq '^ *(listen|connect_address): *127\.0\.0\.1:' "$CONFIG_FILE.next" \
        || die "$CONFIG_TEMPLATE: a listen or connect_address on 127.0.0.1 is left"
    mv "$CONFIG_FILE.next" "$CONFIG_FILE"
}

# The post_bootstrap hook: the app's database, if it is not there yet. Patroni passes a superuser
# connection URL (its password in PGPASSFILE) and PGOPTIONS=synchronous_commit=local: no standby
# exists yet to confirm the commit. The CHECKPOINT writes out the pages the copy of template1 left
# in shared buffers: otherwise each replica's first pg_basebackup waits for a spread checkpoint of
# them (about 4.5 minutes with the default checkpoint_timeout) before it copies anything.
create_database() {
    url=${1:?usage: create-database CONNECTION_URL}
    must_match APP_DATABASE "$APP_DATABASE" '[a-z_][a-z0-9_]*'
    "$BIN_DIR/psql" "$url" -X -q -v ON_ERROR_STOP=1 -v dbname="$APP_DATABASE" <<'SQL'
SELECT format('CREATE DATABASE %I', :'dbname')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')
\gexec
CHECKPOINT;
SQL
    printf 'patroni-entrypoint: database %s is there\n' "$APP_DATABASE" >&2
}

role=${1:-patroni}
[ "$#" -gt 0 ] && shift

case $role in
    patroni)
        render
        exec patroni "$CONFIG_FILE"
        ;;
    create-database)
        create_database "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
