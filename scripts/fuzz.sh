#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside input (cargo-fuzz, libFuzzer):
# builds all targets in fuzz/ once, then runs each for a fixed time, starting from the
# checked-in seeds (fuzz/seeds/TARGET) and the corpus earlier runs grew (fuzz/corpus/TARGET,
# not checked in). Stops at the first crash or hang; the input that caused it is saved under
# fuzz/artifacts/TARGET. Prints one summary line per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 20 s, every target)
#
# FUZZ_PROFILE=dev builds without optimisation: about half the build's CPU time, but some 30
# times fewer executions a second. CI's smoke run uses it; real runs should not.
#
# Replay one saved input: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/FILE
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-20}"
shift || true
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
# cargo-fuzz passes nightly-only (-Z) flags to rustc and cargo; the stable toolchain
# accepts them when told it may.
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# No sanitizer: the project has no `unsafe` code, and AddressSanitizer slows the build and
# every execution; panics, overflows (debug assertions are on), hangs and memory
# blow-ups are what these targets look for.
fuzz_flags=(--sanitizer none)
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
  fuzz_flags+=(--dev)
fi
cargo fuzz build "${fuzz_flags[@]}"
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/corpus/$t.log"
  started=$SECONDS
  # -timeout: one input running longer than 10 s is a hang, reported like a crash.
  # -rss_limit_mb: so is one that needs more than 2 GiB.
  if ! cargo fuzz run "${fuzz_flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  summary+=("$(printf '%-16s %10s execs %5ss %6s corpus files' "$t" "${execs:-?}" \
    "$((SECONDS - started))" "$files")")
done
printf 'fuzz: %s\n' "${summary[@]}"
echo "fuzz: ${#targets[@]} passed, 0 failed"
