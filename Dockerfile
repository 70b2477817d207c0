# syntax=docker/dockerfile:1.7
#
# The API image: one image, three roles (docker/entrypoint.sh):
#   web      wait for the database, apply migrations (unless MIGRATE_ON_START=false), gunicorn
#   worker   the Huey consumer (payments, refunds, order emails)
#   migrate  wait for the database, apply migrations (and seed with SEED_ON_START=true), exit
# Anything else is executed as given: `docker compose run --rm app1 flask users create-admin ...`.
#
#   docker build -t ecommerce-api .

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# builder: every pinned requirement as a wheel. The compiler is here only for a requirement
# that has no wheel for the target platform; none of it reaches the runtime image.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# ---------------------------------------------------------------------------------------------
# runtime: the slim interpreter, the installed wheels and the application, run as a non-root
# user. psycopg2-binary bundles libpq, so no system packages are needed.
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    FLASK_APP=wsgi.py \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    INSTANCE_PATH=/app/instance

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# The wheels are bind-mounted from the builder for this one step, so they never form a layer.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

WORKDIR /app
# The code belongs to root and is read-only for the app user; only instance/ (the sandbox
# payment ledger, and the mail folder when MAIL_SERVER is unset) and media/ (product pictures,
# MEDIA_ROOT in docker-compose.yml) are writable. Mount a volume on each.
COPY ecommerce/ ecommerce/
COPY migrations/ migrations/
COPY wsgi.py gunicorn.conf.py ./
COPY docker/entrypoint.sh docker/
RUN chmod 0755 docker/entrypoint.sh \
 && mkdir -p instance media \
 && chown app:app instance media

USER app:app

EXPOSE 8000

# Liveness of the web role. The worker and migrate services override or disable it (compose).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)" || exit 1

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
