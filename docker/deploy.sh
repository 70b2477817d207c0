#!/usr/bin/env bash
# Deploy one image to one Docker host over SSH: the deploy step of .github/workflows/ci.yml
# (staging and production alike; only the parameters differ). See docs/deployment.md.
#
# Parameters (environment):
#   IMAGE               the image to run, e.g. ghcr.io/acme/ecommerce-api:sha-<commit>   (required)
#   DEPLOY_HOST         the host to deploy to                                             (required)
#   DEPLOY_USER         the SSH user; must be allowed to run `docker`                     (required)
#   DEPLOY_SSH_KEY      that user's private key (OpenSSH format)                          (required)
#   DEPLOY_KNOWN_HOSTS  the host's public key line(s), as `ssh-keyscan HOST` prints them  (required)
#   DEPLOY_PATH         the folder of the compose project on the host  (default /srv/ecommerce)
#   DEPLOY_PORT         the SSH port                                   (default 22)
#   REGISTRY_USER / REGISTRY_TOKEN   a registry login for a private image (optional; ghcr.io)
#
# On the host, DEPLOY_PATH/.env holds the stack's secrets and settings (SECRET_KEY,
# JWT_SECRET_KEY, POSTGRES_PASSWORD, POSTGRES_REPLICATION_PASSWORD, POSTGRES_REWIND_PASSWORD,
# GRAFANA_ADMIN_PASSWORD, HTTP_BIND, ...); it is made once by hand and never leaves the host.
# This script only sets its IMAGE= line.
#
# What it does (a rolling update: one app instance at a time, nginx sends traffic to the other):
#   1. copies the files the compose project reads (docker-compose.yml, docker/, grafana/,
#      prometheus/, and patroni/ with .dockerignore: the PostgreSQL nodes' image is built on the
#      host) into DEPLOY_PATH;
#   2. sets IMAGE in DEPLOY_PATH/.env, so later manual `docker compose` commands use it too;
#   3. refuses to go on while the single `postgres` container of an earlier release exists (its
#      data must be moved into the cluster first, docs/deployment.md); pulls the images, builds the
#      nodes' image, starts etcd, the PostgreSQL cluster (pg1, pg2, pg3), Redis and the mail sink
#      (waiting until healthy). Nodes whose image and settings are unchanged keep running;
#   4. runs the `migrate` service once (flask db upgrade); a failure stops the deploy here, with
#      the old instances still serving. Migrations must therefore suit the old code as well
#      (add first, drop in a later release);
#   5. recreates app1, waits until it is healthy, reloads nginx (which resolves the new
#      container's address); then app2 the same way; then the worker;
#   6. brings up nginx, Prometheus and Grafana and waits for them.
set -euo pipefail

: "${IMAGE:?IMAGE is required}"
: "${DEPLOY_HOST:?DEPLOY_HOST is required}"
: "${DEPLOY_USER:?DEPLOY_USER is required}"
: "${DEPLOY_SSH_KEY:?DEPLOY_SSH_KEY is required}"
: "${DEPLOY_KNOWN_HOSTS:?DEPLOY_KNOWN_HOSTS is required}"
DEPLOY_PATH="${DEPLOY_PATH:-/srv/ecommerce}"
DEPLOY_PORT="${DEPLOY_PORT:-22}"
REGISTRY_USER="${REGISTRY_USER:-}"
REGISTRY_TOKEN="${REGISTRY_TOKEN:-}"

cd "$(dirname "$0")/.."

secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
(umask 077 && printf '%s\n' "$DEPLOY_SSH_KEY" >"$secrets/key")
printf '%s\n' "$DEPLOY_KNOWN_HOSTS" >"$secrets/known_hosts"

ssh_cmd=(ssh -i "$secrets/key" -p "$DEPLOY_PORT"
    -o BatchMode=yes -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$secrets/known_hosts"
    "$DEPLOY_USER@$DEPLOY_HOST")

echo "deploy: $IMAGE -> $DEPLOY_USER@$DEPLOY_HOST:$DEPLOY_PATH"

# 1. The compose project's files (never .env: the host keeps its own).
tar -czf - docker-compose.yml .dockerignore docker grafana prometheus patroni |
    "${ssh_cmd[@]}" "mkdir -p $(printf '%q' "$DEPLOY_PATH") && tar -xzf - -C $(printf '%q' "$DEPLOY_PATH")"

# 2-5. On the host. The values travel inside the script on stdin, never on a command line.
"${ssh_cmd[@]}" bash -s <<REMOTE
set -euo pipefail
umask 077
cd $(printf '%q' "$DEPLOY_PATH")
image=$(printf '%q' "$IMAGE")
registry_user=$(printf '%q' "$REGISTRY_USER")
registry_token=$(printf '%q' "$REGISTRY_TOKEN")

if [ -n "\$registry_token" ]; then
    printf '%s' "\$registry_token" | docker login "\${image%%/*}" -u "\$registry_user" --password-stdin
fi

touch .env
chmod 600 .env
{ grep -v '^IMAGE=' .env || true; printf 'IMAGE=%s\n' "\$image"; } >.env.next
mv .env.next .env

if [ -n "\$(docker ps -aq --filter label=com.docker.compose.project=ecommerce --filter label=com.docker.compose.service=postgres)" ]; then
    echo "deploy: the single postgres container of an earlier release is still here; move its data into the Patroni cluster first (docs/deployment.md)" >&2
    exit 1
fi

up_wait=(--no-build --no-deps --wait --wait-timeout 180)
docker compose pull --quiet
docker compose build --quiet pg1 pg2 pg3
docker compose up -d --no-build --remove-orphans --wait --wait-timeout 180 etcd pg1 pg2 pg3 redis mailpit
docker compose run --rm -T --no-deps migrate
for instance in app1 app2; do
    docker compose up -d "\${up_wait[@]}" "\$instance"
    # On a first deploy nginx is not running yet: nothing to reload.
    docker compose exec -T nginx nginx -s reload 2>/dev/null || true
done
docker compose up -d "\${up_wait[@]}" worker
docker compose up -d "\${up_wait[@]}" nginx prometheus grafana
docker compose exec -T nginx nginx -s reload
docker compose ps
REMOTE

echo "deploy: done"
