#!/usr/bin/env bash
# Create the demo workspace once; print and save its API key and URLs.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO="${STATE}/demo.env"
API_URL="http://${BIND_HOST}:${CHAINLOG_API_PORT:-8080}"
DB_URL="postgresql://postgres@${BIND_HOST}:${PG_PORT}/chainlog"
if [[ ! -s "$DEMO" ]]; then
    created="$("${REPO}/.venv/bin/chainlog" workspace create demo --plan pro)"
    key="$(printf '%s' "$created" | "${REPO}/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')"
    umask 077
    {
        echo "CHAINLOG_API_URL=${API_URL}"
        echo "CHAINLOG_API_KEY=${key}"
        echo "CHAINLOG_DATABASE_URL=${DB_URL}"
    } >"$DEMO"
fi
cat <<MSG

Chainlog is running.
  API:        ${API_URL}   (OpenAPI docs: ${API_URL}/docs)
  Console:    ${API_URL}/console   (sign in with the demo key)
  Demo key:   $(grep '^CHAINLOG_API_KEY=' "$DEMO" | cut -d= -f2-)
  Database:   ${DB_URL}
  Saved in:   ${DEMO}     (source it: set -a; . ${DEMO}; set +a)
  Logs:       ${LOGS}/
MSG
