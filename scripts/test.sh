#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test in release mode
# (the parity tests run the real model; unoptimised they would take minutes).
# Tests that need the real model or llama-cpp-python skip when those are
# missing, unless SERVEBENCH_REQUIRE_PEERS=1 (set by .ci/run) makes that fail.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
# Every test binary runs even when one fails, so one report shows all failures.
cargo test --workspace --release --no-fail-fast
