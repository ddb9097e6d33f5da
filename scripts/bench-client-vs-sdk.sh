#!/usr/bin/env bash
# Our client against the official Python SDK (azure-storage-file-share 12.27.1) on one handle
# service holding HANDLES handles: (i) list them all, (ii) close them one by one by id (our
# client and a thread pool with CONCURRENCY in flight, and both one at a time), (iii) the
# wildcard close. Every run gets a freshly loaded `share-hygiene handle-service` (release
# build, separate process). Reproduces docs/benchmarks.md "Client vs Python SDK" from a clean
# checkout: builds what it needs and creates its own venv under target/.
#
#   scripts/bench-client-vs-sdk.sh                        # 100,000 handles, 16 in flight
#   HANDLES=10000 SDK_SEQUENTIAL=0 scripts/bench-client-vs-sdk.sh   # quick look
#
# Output: JSON lines in $OUT/results.jsonl and the Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

HANDLES=${HANDLES:-100000}
PER_FILE=${PER_FILE:-100}
CONCURRENCY=${CONCURRENCY:-16}
CLOSE_BATCH=${CLOSE_BATCH:-1000}
SDK_SEQUENTIAL=${SDK_SEQUENTIAL:-1} # the SDK closing one handle at a time takes minutes
OUT=${OUT:-target/bench-client-vs-sdk}
ACCOUNT=benchacct
SHARE=benchshare

mkdir -p "$OUT"
results="$OUT/results.jsonl"
: >"$results"

venv="$OUT/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "azure-storage-file-share==12.27.1"
py="$venv/bin/python"

cargo build --release --locked --bin share-hygiene
server_bin="$PWD/target/release/share-hygiene"
rust_bench=$(cargo bench --locked --bench client_vs_sdk --no-run --message-format=json 2>/dev/null |
  "$py" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "client_vs_sdk":
        print(m["executable"])')
[ -x "$rust_bench" ] || { echo "could not build the client_vs_sdk bench" >&2; exit 1; }

seed="$OUT/seed.yaml"
"$py" scripts/bench/sdk_bench.py seed --out "$seed" --share "$SHARE" --handles "$HANDLES" --per-file "$PER_FILE"
key=$("$py" -c 'import base64, os; print(base64.b64encode(os.urandom(64)).decode())')
export BENCH_ACCOUNT_KEY="$key"

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

start_server() {
  port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SHARE_HYGIENE_ACCOUNT_KEY="$key" RUST_LOG=warn "$server_bin" handle-service --seed "$seed" \
    --listen "127.0.0.1:$port" --account "$ACCOUNT" --close-batch "$CLOSE_BATCH" &
  server_pid=$!
  for _ in $(seq 1 600); do
    if "$py" -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      url="http://127.0.0.1:$port/$ACCOUNT/$SHARE"
      return
    fi
    sleep 0.1
  done
  echo "the handle service did not start" >&2
  exit 1
}

# One measured run on a fresh service: the client prints one JSON line.
run() {
  start_server
  "$@" --url "$url" | tee -a "$results"
  stop_server
}

# The CLI as a whole process (startup and output included), timed from outside.
run_cli() {
  local mode=$1
  shift
  start_server
  local t="$OUT/time.txt"
  AZURE_STORAGE_KEY="$key" /usr/bin/time -f '%e %U %S' -o "$t" "$server_bin" handles "$@" \
    --share-url "$url" --recursive -o json >"$OUT/cli-$mode.json"
  stop_server
  "$py" - "$mode" "$t" "$OUT/cli-$mode.json" "$HANDLES" <<'EOF' | tee -a "$results"
import json, math, sys
mode, timefile, outfile, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
wall, user, system = map(float, open(timefile).read().split()[-3:])
out = json.load(open(outfile))
pages = max(1, math.ceil(n / 5000))
if mode == "list":
    handles, requests = len(out), pages  # one request a page
else:
    handles, requests = out["closed"], pages + out["requests"]  # it lists first, then closes
print(json.dumps({"client": "share-hygiene CLI (whole process)", "mode": mode, "concurrency": 1,
                  "handles": handles, "failed": 0, "wall_s": wall, "requests": requests,
                  "cpu_user_s": user, "cpu_sys_s": system}))
EOF
}

echo "== $HANDLES handles, $PER_FILE per file; close batch $CLOSE_BATCH; $CONCURRENCY in flight" >&2
run "$rust_bench" list
run "$py" scripts/bench/sdk_bench.py list
run_cli list list

run "$rust_bench" close-each --concurrency "$CONCURRENCY"
run "$py" scripts/bench/sdk_bench.py close-each-pool --concurrency "$CONCURRENCY"
run "$rust_bench" close-each --concurrency 1
run "$rust_bench" close-each --concurrency 1 --runtime current
if [ "$SDK_SEQUENTIAL" = 1 ]; then
  run "$py" scripts/bench/sdk_bench.py close-each
fi

run "$rust_bench" close-all
run "$py" scripts/bench/sdk_bench.py close-all
run_cli close-all close --all

echo >&2
"$py" scripts/bench/report.py "$results"
