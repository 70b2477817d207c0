# Two commands on a fresh machine:
#   make run   install into .venv, migrate, seed a demo catalog, serve on http://127.0.0.1:$(PORT)
#   make test  install the test requirements and run the suite (PostgreSQL + Redis on 127.0.0.1)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
SEED_PRODUCTS ?= 1000
WORKERS ?= 4
PYTEST_ARGS ?=
export FLASK_APP := wsgi.py
export PORT

.PHONY: help install install-dev run serve worker migrate seed test lint format bench-cache bench-checkout bench-payments clean stack stack-down stack-reload patroni-up patroni-down patroni-status system-packages load load-saturate bench-targets report

help:
	@echo "make run          install, migrate, seed; serve on http://127.0.0.1:$(PORT) with a worker"
	@echo "make worker       the background worker alone (WORKERS=$(WORKERS) threads)"
	@echo "make stack        nginx on http://127.0.0.1:8080 in front of two app instances, a worker and Prometheus"
	@echo "make stack-down   stop everything make stack started"
	@echo "make stack-reload migrate, restart the stack's instances one at a time (out of nginx meanwhile), then its worker"
	@echo "make patroni-up   etcd and three Patroni-managed PostgreSQL nodes (5433-5435, REST 8008-8010)"
	@echo "make patroni-down stop them (make patroni-status: members, roles, lag)"
	@echo "make test         install test requirements and run the test suite"
	@echo "make load         JMeter plans against the stack (starts it if needed); report in docs/load/"
	@echo "make load-saturate  catalog and orders with no think time, 1 -> 64 threads: the knee (docs/load/saturation/)"
	@echo "make bench-targets  the read targets through nginx, as ratios to /healthz (benchmarks/targets.py)"
	@echo "make report       the project report, docs/report.pdf: docs/*.md, the models and a live run of the app"
	@echo "                  (settings: REPORT_TITLE, REPORT_ORGANISATION for the title page's organisation,"
	@echo "                  REPORT_DATE, REPORT_OUT for another path; scripts/report/build.py lists them all)"
	@echo "make lint         ruff check"
	@echo "make migrate      apply database migrations"
	@echo "make seed         seed the demo catalog (SEED_PRODUCTS=$(SEED_PRODUCTS))"
	@echo "make bench-cache  cached vs uncached product detail, side by side"
	@echo "make bench-checkout  checkout: 50 buyers on distinct products vs one hot product"
	@echo "make bench-payments  payments: POST, then poll until the worker has charged them"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the pins change.
$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

install: $(VENV)/.runtime-installed

install-dev: $(VENV)/.dev-installed

migrate: install
	$(BIN)/flask db upgrade

seed: install
	$(BIN)/flask seed --products $(SEED_PRODUCTS)

run: migrate seed serve

# The web server and the background worker, started and stopped together.
serve: install
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	$(BIN)/huey_consumer ecommerce.worker.huey -k thread -w $(WORKERS) & worker=$$!; \
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

# The background worker alone (payments, refunds, order emails).
worker: install
	exec $(BIN)/huey_consumer ecommerce.worker.huey -k thread -w $(WORKERS)

# The production-like local stack (no Docker): scripts/stack.sh up|down|status|reload, STACK_* variables.
stack: install
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

# New code, new processes: each instance out of nginx's upstream, restarted, back; then the worker.
stack-reload:
	scripts/stack.sh reload

# The PostgreSQL cluster (no Docker): scripts/patroni.sh up|down|status|env|crash|start|switchover.
# Point the app at it with: eval "$$(scripts/patroni.sh env)"; export DATABASE_URL DATABASE_REPLICA_URL
patroni-up:
	scripts/patroni.sh up

patroni-down:
	scripts/patroni.sh down

patroni-status:
	scripts/patroni.sh status

# JMeter plans (jmeter/*.jmx) against the stack, or LOAD_HOST/LOAD_PORT; report into docs/load/.
load: install-dev
	scripts/load.sh

# No think time and threads ramped from 1 to 64 over 60 s, then held: where throughput stops
# growing with concurrency and latency starts to climb.
load-saturate: install-dev
	LOAD_PLANS="$${LOAD_PLANS:-catalog orders}" LOAD_THREADS=$${LOAD_THREADS:-64} LOAD_RAMPUP=$${LOAD_RAMPUP:-60} \
	  LOAD_DURATION=$${LOAD_DURATION:-90} LOAD_THINK_MS=0 LOAD_OUT=$${LOAD_OUT:-docs/load/saturation} scripts/load.sh

bench-targets: install-dev
	$(BIN)/python benchmarks/targets.py

# The Debian packages the tests use (nginx, prometheus, etcd-server, ...), installed if missing.
system-packages:
	scripts/system_packages.sh

test: install-dev system-packages
	$(BIN)/python -m pytest --junitxml=run/test-results.xml $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check ecommerce tests wsgi.py gunicorn.conf.py benchmarks scripts docker patroni jmeter
	$(BIN)/ruff format --check ecommerce tests wsgi.py gunicorn.conf.py benchmarks scripts docker patroni jmeter

format: install-dev
	$(BIN)/ruff format ecommerce tests wsgi.py gunicorn.conf.py benchmarks scripts docker patroni jmeter
	$(BIN)/ruff check --fix ecommerce tests wsgi.py gunicorn.conf.py benchmarks scripts docker patroni jmeter

# The project report (scripts/report/): the chapters from docs/, figures and tables from a live run
# of the app (started and stopped here), the models' metadata and the committed benchmark outputs.
report: install-dev system-packages
	$(BIN)/python -m scripts.report.build

bench-cache: install-dev
	$(BIN)/python benchmarks/cache_vs_db.py

bench-checkout: install-dev
	$(BIN)/python benchmarks/checkout.py

bench-payments: install-dev
	$(BIN)/python benchmarks/payments.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
