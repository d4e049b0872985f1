#!/usr/bin/env bash
# The single sign-on tests run panva's oidc-provider under Node 20+ (tests/identity/provider):
# install Node when it is missing and the pinned packages (npm ci, from package-lock.json).
set -euo pipefail
PROVIDER="$(cd "$(dirname "$0")/.." && pwd)/tests/identity/provider"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "Node.js is missing; installing it for the identity provider of the tests..." >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "Cannot install Node.js without root: run 'apt-get install nodejs npm'." >&2
    exit 1
  fi
fi
if [ ! -f "$PROVIDER/node_modules/.package-lock.json" ] || [ "$PROVIDER/package-lock.json" -nt "$PROVIDER/node_modules/.package-lock.json" ]; then
  (cd "$PROVIDER" && npm ci --no-audit --no-fund --loglevel=error)
fi
