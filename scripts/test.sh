#!/usr/bin/env bash
# Runs every check and test: formatting, lints, the Rust tests, and the Python tests that drive
# the program with real clients (the Azure SDK, SMB clients against a real smbd, Helm,
# kubernetes-validate, promtool). Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked
cargo test --locked
# Every fuzz target for 5 s from its seeds, unoptimised to build fast (docs/benchmarks.md).
FUZZ_PROFILE=dev scripts/fuzz.sh 5
if [ -n "${KUBECONFIG:-}" ]; then
  cargo test --locked --test e2e_cluster -- --ignored
else
  echo "e2e_cluster: skipped (KUBECONFIG is not set; see docs/controller.md to run it on kind)"
fi
export SHARE_HYGIENE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/share-hygiene"
.venv/bin/python -m pytest -q tests
