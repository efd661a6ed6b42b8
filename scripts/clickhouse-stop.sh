#!/usr/bin/env bash
# Stops the private ClickHouse server that scripts/clickhouse.sh started on HTTP_PORT
# (data under .vigie/clickhouse-HTTP_PORT/, or VIGIE_CLICKHOUSE_DIR as it was given there).
set -euo pipefail
http_port=${1:?usage: clickhouse-stop.sh HTTP_PORT}
root=$(cd "$(dirname "$0")/.." && pwd)
pidfile="${VIGIE_CLICKHOUSE_DIR:-$root/.vigie/clickhouse-$http_port}/ch.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
kill "$pid" 2>/dev/null || exit 0
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
