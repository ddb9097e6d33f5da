#!/usr/bin/env bash
# Runs every check and test: formatting, lints, Rust tests, and the Python tests that drive
# the program with real clients. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked
cargo test --locked
SHARE_HYGIENE_BIN="$PWD/target/debug/share-hygiene" .venv/bin/python -m pytest -q tests
