# A tiny check harness shared by the scripts/check-*.sh scripts: `run` and `refuse` record one
# check each and print `ok`/`FAIL`; `summary` prints the `N passed, N failed` line and sets the
# exit status. Source it after `set -euo pipefail`.

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# run NAME COMMAND...: the command must succeed.
run() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    tail -n 40 "$work/out" | sed 's/^/    /'
  fi
}

# refuse NAME PATTERN COMMAND...: the command must fail, saying PATTERN (an extended regex).
refuse() {
  local name=$1 pattern=$2
  shift 2
  if "$@" >"$work/out" 2>&1; then
    failed=$((failed + 1))
    echo "FAIL $name: accepted"
  elif grep -Eq "$pattern" "$work/out"; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name: failed without /$pattern/"
    tail -n 20 "$work/out" | sed 's/^/    /'
  fi
}

# summary: the closing line; exits non-zero when a check failed.
summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
