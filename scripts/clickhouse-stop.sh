#!/usr/bin/env bash
# Stops the private ClickHouse server that scripts/clickhouse.sh started on HTTP_PORT.
set -euo pipefail
http_port=${1:?usage: clickhouse-stop.sh HTTP_PORT}
root=$(cd "$(dirname "$0")/.." && pwd)
pidfile="$root/.vigie/clickhouse-$http_port/ch.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
kill "$pid" 2>/dev/null || exit 0
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
