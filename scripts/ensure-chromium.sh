#!/usr/bin/env bash
# The browser tests drive Debian's Chromium; install it when it is missing.
set -euo pipefail
CHROMIUM=${CATALOG_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "Chromium is missing at $CHROMIUM; installing it for the browser tests..." >&2
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
elif command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
else
  echo "Cannot install Chromium without root: run 'apt-get install chromium' (or set CATALOG_CHROMIUM)." >&2
  exit 1
fi
[ -x "$CHROMIUM" ] || { echo "Chromium still missing at $CHROMIUM" >&2; exit 1; }
