#!/usr/bin/env bash
# Load benchmark of `sluice dev` over HTTP (tests/benches/http_load.rs); not part of
# infra/test.sh. Builds the release `sluice` and runs the benchmark against it. The environment
# passes through: BENCH_SECONDS (per cell, default 10), BENCH_WARMUP_SECONDS (default 1),
# BENCH_CONCURRENCY (default 1,8,32), BENCH_SHAPES (default async,sync,fan-out,event,webhook), BENCH_ROUNDS (default 1),
# CARGO_TARGET_DIR, SLUICE_BIN (default: the binary just built).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p sluice-cli
export SLUICE_BIN="${SLUICE_BIN:-$target/release/sluice}"
cargo bench --locked -p sluice-e2e --bench http_load
