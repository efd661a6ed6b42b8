#!/usr/bin/env bash
# The whole test suite: unit, property, oracle and end-to-end tests against a real
# ClickHouse (a private server on 127.0.0.1:18123 unless VIGIE_TEST_CLICKHOUSE_URL is set;
# every test creates and drops its own database) and a real Fluvio cluster, the ONNX scorer on the onnxruntime
# library of its PyPI wheel, the Arroyo UDF plugins loaded as Arroyo loads them, the
# scorer against VADER on the labeled sets (eval/), the patched fjall's and lsm-tree's own unit tests,
# then the schema and the README's BI queries on a current ClickHouse engine (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."
VIGIE_TEST_CLICKHOUSE_URL=$(scripts/clickhouse.sh VIGIE_TEST_CLICKHOUSE_URL 18123 19000)
export VIGIE_TEST_CLICKHOUSE_URL
echo "tests use ClickHouse at $VIGIE_TEST_CLICKHOUSE_URL" >&2
# The `fluvio` feature's tests need a Fluvio cluster: unless VIGIE_TEST_FLUVIO names one,
# build fluvio-run from third_party/fluvio once (cached) and start a private SC + SPU on
# 127.0.0.1:19003 / :19010 for this run.
if [ -z "${VIGIE_TEST_FLUVIO:-}" ]; then
  fluvio_dir=$(mktemp -d)
  trap 'third_party/fluvio/stop.sh "$fluvio_dir"; rm -rf "$fluvio_dir"' EXIT
  VIGIE_TEST_FLUVIO=$(FLUVIO_SC_PORT=19003 FLUVIO_SPU_PORT=19010 third_party/fluvio/start.sh "$fluvio_dir")
fi
export VIGIE_TEST_FLUVIO
echo "tests use Fluvio at $VIGIE_TEST_FLUVIO" >&2
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
# The vendored store's own unit tests, on the patched source (third_party/*/VIGIE.md; the
# compaction lane of fjall's worker pool and lsm-tree's memtable filter are tested there).
(cd third_party/fjall && CARGO_TARGET_DIR=../../target/fjall \
  cargo test --lib --config 'patch.crates-io.lsm-tree.path="../lsm-tree"' -q)
(cd third_party/lsm-tree && CARGO_TARGET_DIR=../../target/lsm cargo test --lib -q)
python3 eval/evaluate.py --vigie target/debug/vigie --check
python3 scripts/chdb_check.py
