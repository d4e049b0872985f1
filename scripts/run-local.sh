#!/usr/bin/env bash
# `make run`: migrate, load the demo, start a Celery worker and the web server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
# Debug off, as in production: people trying the demo see the catalog's own 403/404/405/500
# pages, never Django's debug pages (which list every URL pattern and show tracebacks). Errors
# are still logged with their tracebacks on this console; static files are served by WhiteNoise
# (config/settings/local.py). DEBUG=true make run brings the debug pages back.
export DEBUG=${DEBUG:-false}

echo "Database: ${DATABASE_URL:-embedded SQLite in ${CATALOG_VAR_DIR:-var}/}; broker: ${REDIS_URL:-embedded, in ${CATALOG_VAR_DIR:-var}/}"
"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py load_demo

"$BIN/celery" -A config worker --loglevel WARNING --queues catalog,sync --pool solo --beat &
worker=$!
trap 'kill "$worker" 2>/dev/null || true' EXIT

echo
echo "The catalog is at http://$HOST:$PORT/  (API docs: http://$HOST:$PORT/api/docs/). Ctrl-C stops it."
"$BIN/python" manage.py runserver "$HOST:$PORT"
