#!/usr/bin/env bash
# Builds vigie's Arroyo UDF plugins (cdylibs) and checks each one by loading it as Arroyo
# does: dlopen, then `__run` over the Arrow C Data Interface, compared with vigie-udfs.
#
# A cargo workspace of its own, built into udfs/arroyo/target (dev profile). The plugins are
# built first, explicitly: `cargo test` alone does not build a cdylib that nothing links to.
# Set CARGO_BUILD_JOBS to limit parallelism.
set -euo pipefail
cd "$(dirname "$0")"

echo "== udfs/arroyo: building the plugins"
cargo build --workspace

echo "== udfs/arroyo: loading and checking them"
cargo test --workspace
