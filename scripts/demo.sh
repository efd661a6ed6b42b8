#!/usr/bin/env bash
# The main job on a fresh machine: a ClickHouse (VIGIE_CLICKHOUSE_URL, or a private server
# on 127.0.0.1:8123 installed and started when needed), the schema, a demo organisation
# with sources, `vigie run`, and `vigie gen` feeding it. Prints where to look, then runs
# until Ctrl-C (or for VIGIE_DEMO_SECONDS seconds when set).
set -euo pipefail
cd "$(dirname "$0")/.."
VIGIE_CLICKHOUSE_URL=$(scripts/clickhouse.sh VIGIE_CLICKHOUSE_URL 8123 9000)
export VIGIE_CLICKHOUSE_URL
export VIGIE_CLICKHOUSE_DATABASE=${VIGIE_CLICKHOUSE_DATABASE:-vigie_demo}
listen=${VIGIE_LISTEN:-127.0.0.1:8080}
export VIGIE_LISTEN=$listen
mkdir -p .vigie

echo "building vigie (release)…" >&2
cargo build --release --quiet -p vigie-pipeline
vigie=${CARGO_TARGET_DIR:-target}/release/vigie
$vigie migrate

field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/"; }
org_json=$($vigie org create "Acme Demo" --json)
org=$(echo "$org_json" | field org_id)
key=$(echo "$org_json" | field ingest_key)
reddit=$($vigie source add --org "$org" --type reddit --name "r/acme" --keywords acme,nimbus --json | field source_id)
twitter=$($vigie source add --org "$org" --type twitter --name "@acme" --keywords acme --json | field source_id)
org2_json=$($vigie org create "Lumio Demo" --json)
org2=$(echo "$org2_json" | field org_id)
key2=$(echo "$org2_json" | field ingest_key)
news=$($vigie source add --org "$org2" --type news --name "tech news" --keywords lumio --json | field source_id)
cat > .vigie/demo.env <<ENV
export VIGIE_CLICKHOUSE_URL=$VIGIE_CLICKHOUSE_URL
export VIGIE_CLICKHOUSE_DATABASE=$VIGIE_CLICKHOUSE_DATABASE
export VIGIE_URL=http://$listen
export VIGIE_DEMO_ORG=$org
export VIGIE_DEMO_KEY=$key
export VIGIE_DEMO_SOURCE=$reddit
ENV

$vigie run --workers 2 --data-dir .vigie/data &
vigie_pid=$!
gen_pid=""
cleanup() {
  [ -n "$gen_pid" ] && kill "$gen_pid" 2>/dev/null || true
  kill -TERM "$vigie_pid" 2>/dev/null || true
  wait "$vigie_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
$vigie gen --post "http://$listen" --count 0 --rate 2000 --live \
  --feed "$key=$reddit,$twitter" --feed "$key2=$news" &
gen_pid=$!
sleep 3

db=$VIGIE_CLICKHOUSE_DATABASE
cat <<MSG

vigie is running on http://$listen, fed by 'vigie gen --live' at 2000 mentions/s.
Demo organisation $org (key and source id in .vigie/demo.env).

Look at the results:
  curl -s "$VIGIE_CLICKHOUSE_URL/?database=$db" --data-binary "SELECT granularity, bucket, source_id, total, positive, negative, round(avg_sentiment, 3) AS avg_sentiment, top_emotions FROM trends_current WHERE org_id = '$org' AND granularity = 'day' ORDER BY bucket DESC LIMIT 5 FORMAT PrettyCompact"
  curl -s "$VIGIE_CLICKHOUSE_URL/?database=$db" --data-binary "SELECT count() FROM mentions FINAL FORMAT PrettyCompact"
  curl -s "$VIGIE_CLICKHOUSE_URL/?database=$db" --data-binary "SELECT created_at, level, type, message FROM alerts_current ORDER BY created_at DESC LIMIT 5 FORMAT PrettyCompact"
  curl -N -H "Authorization: Bearer $key" http://$listen/v1/alerts/stream    # live alerts (SSE)
  curl -s http://$listen/metrics | grep -E '^vigie_(mentions|clickhouse_rows)'
  clickhouse-client --port 9000 --database $db    # with the private server this script starts

Post your own mentions: see README.md ("Try it"), after: source .vigie/demo.env
MSG
echo
curl -s "$VIGIE_CLICKHOUSE_URL/?database=$db" --data-binary "SELECT granularity, count() AS rows, sum(total) AS mentions FROM trends_current GROUP BY granularity ORDER BY granularity FORMAT PrettyCompact"
if [ -n "${VIGIE_DEMO_SECONDS:-}" ]; then
  sleep "$VIGIE_DEMO_SECONDS"
else
  echo "Ctrl-C to stop." >&2
  wait "$vigie_pid"
fi
