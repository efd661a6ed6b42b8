#!/usr/bin/env bash
# Makes sure a ClickHouse server answers, and prints its HTTP URL on stdout.
#
#   scripts/clickhouse.sh URL_VAR HTTP_PORT TCP_PORT
#
# If the variable named URL_VAR is set (e.g. VIGIE_CLICKHOUSE_URL), that server is used as is.
# Otherwise a private server is started on 127.0.0.1:HTTP_PORT (native protocol on TCP_PORT)
# with its data under .vigie/clickhouse-HTTP_PORT/ (or VIGIE_CLICKHOUSE_DIR, e.g. on another
# filesystem), after installing Debian's clickhouse-server and clickhouse-client when they
# are missing. A private server that is already running is reused. Stop it with:
# scripts/clickhouse-stop.sh HTTP_PORT (with the same VIGIE_CLICKHOUSE_DIR).
set -euo pipefail
var=${1:?usage: clickhouse.sh URL_VAR HTTP_PORT TCP_PORT}
http_port=${2:?}
tcp_port=${3:?}
root=$(cd "$(dirname "$0")/.." && pwd)

log() { echo "clickhouse: $*" >&2; }

if [ -n "${!var:-}" ]; then
  url=${!var}
  if ! curl -fsS "$url/ping" >/dev/null 2>&1; then
    log "$var=$url does not answer /ping"
    exit 1
  fi
  echo "$url"
  exit 0
fi

url="http://127.0.0.1:$http_port"
dir="${VIGIE_CLICKHOUSE_DIR:-$root/.vigie/clickhouse-$http_port}"
if [ -f "$dir/ch.pid" ] && kill -0 "$(cat "$dir/ch.pid")" 2>/dev/null && curl -fsS "$url/ping" >/dev/null 2>&1; then
  log "reusing the private server at $url"
  echo "$url"
  exit 0
fi

if ! command -v clickhouse-server >/dev/null 2>&1; then
  log "installing Debian's clickhouse-server and clickhouse-client"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >&2
fi

if curl -fsS "$url/ping" >/dev/null 2>&1; then
  log "something else already answers on $url; set $var to use it, or free port $http_port"
  exit 1
fi

mkdir -p "$dir/data/tmp" "$dir/data/uf" "$dir/data/fs"
config=/etc/clickhouse-server/config.xml
log "starting a private server on $url (data in $dir)"
clickhouse-server --config-file="$config" --daemon --pid-file="$dir/ch.pid" -- \
  --path="$dir/data/" --tmp_path="$dir/data/tmp/" --user_files_path="$dir/data/uf/" \
  --format_schema_path="$dir/data/fs/" --logger.log="$dir/server.log" --logger.errorlog="$dir/err.log" \
  --http_port="$http_port" --tcp_port="$tcp_port" --interserver_http_port="$((tcp_port + 9))" >&2
for _ in $(seq 1 100); do
  if curl -fsS "$url/ping" >/dev/null 2>&1; then
    echo "$url"
    exit 0
  fi
  sleep 0.1
done
log "the server did not answer within 10 s; see $dir/err.log"
tail -n 20 "$dir/err.log" >&2 || true
exit 1
