# Two commands for a newcomer:
#   make run    the catalog with demo data at http://127.0.0.1:8000 (SQLite + embedded broker by default;
#               PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set)
#   make test   installs what the tests need, starts PostgreSQL, Redis and MariaDB if down, and runs them
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test worker install

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.runtime

run: $(VENV)/.runtime
	scripts/run-local.sh

worker: $(VENV)/.runtime
	$(BIN)/celery -A config worker --loglevel INFO --queues catalog,sync

# The tests run on PostgreSQL and Redis (started if down), as production does; set DATABASE_URL
# and REDIS_URL to use others.
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/catalog_test
test: export REDIS_URL ?= redis://127.0.0.1:6379/11
# The audited PostgreSQL warehouse (pgaudit, a second cluster) the monitoring tests read.
test: export AUDITED_WAREHOUSE_URL ?= postgresql://postgres@127.0.0.1:5433/postgres
test: $(VENV)/.dev
	scripts/ensure-services.sh
	scripts/ensure-audited-warehouse.sh
	scripts/ensure-chromium.sh
	scripts/ensure-identity-provider.sh
	$(BIN)/pytest $(PYTEST_ARGS)
