#!/usr/bin/env bash
# The whole test suite: unit, property, oracle and end-to-end tests against a real
# ClickHouse (a private server on 127.0.0.1:18123 unless VIGIE_TEST_CLICKHOUSE_URL is set;
# every test creates and drops its own database), the ONNX scorer on the onnxruntime
# library of its PyPI wheel, the Arroyo UDF plugins loaded as Arroyo loads them, the
# scorer against VADER on the labeled sets (eval/), then the schema and the README's BI
# queries on a current ClickHouse engine (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."
VIGIE_TEST_CLICKHOUSE_URL=$(scripts/clickhouse.sh VIGIE_TEST_CLICKHOUSE_URL 18123 19000)
export VIGIE_TEST_CLICKHOUSE_URL
echo "tests use ClickHouse at $VIGIE_TEST_CLICKHOUSE_URL" >&2
python3 -m pip install -q --disable-pip-version-check -r eval/requirements.txt
ORT_DYLIB_PATH=$(python3 eval/onnx/runtime_path.py)
export ORT_DYLIB_PATH
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo nextest run -p vigie-udfs --no-fail-fast # default features: no NRC EmoLex
  cargo test --workspace --all-features --doc
else
  cargo test --workspace --all-features --no-fail-fast
  cargo test -p vigie-udfs --no-fail-fast
fi
udfs/arroyo/test.sh
python3 eval/evaluate.py --vigie target/debug/vigie --check
python3 scripts/chdb_check.py
