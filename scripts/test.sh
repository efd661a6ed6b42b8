#!/usr/bin/env bash
# The whole test suite: unit, property, oracle and end-to-end tests against a real
# ClickHouse (a private server on 127.0.0.1:18123 unless VIGIE_TEST_CLICKHOUSE_URL is set;
# every test creates and drops its own database), then the schema and the README's BI
# queries on a current ClickHouse engine (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."
VIGIE_TEST_CLICKHOUSE_URL=$(scripts/clickhouse.sh VIGIE_TEST_CLICKHOUSE_URL 18123 19000)
export VIGIE_TEST_CLICKHOUSE_URL
echo "tests use ClickHouse at $VIGIE_TEST_CLICKHOUSE_URL" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo test --workspace --all-features --doc
else
  cargo test --workspace --all-features --no-fail-fast
fi
python3 -m pip install -q --disable-pip-version-check chdb-core
python3 scripts/chdb_check.py
