#!/usr/bin/env bash
# Runs deploy/samba's pod without Kubernetes, to check its configuration for real: smb.conf
# and start-samba.sh from samba-config.yaml, and the handle-service sidecar's arguments,
# environment and capabilities from samba.yaml.
#
# The "pod" is a new mount, network and PID namespace (unshare), so the two processes share
# what the pod's containers share (processes, 127.0.0.1, the volumes) and nothing of the host
# is touched: /etc is an overlay, and the volumes (/etc/samba, /var/lib/samba, /run/samba,
# /var/cache/samba, /srv) are tmpfs. The sidecar runs as samba.yaml says: root with only
# DAC_OVERRIDE, no privilege escalation. Checks:
#   - the start script creates the admin login and smbd serves SMB on 445;
#   - after a container restart (fresh /etc, kept /var/lib/samba) it starts again;
#   - the sidecar becomes ready and sees both shares of smb.conf;
#   - it lists a handle an SMB client holds, force-closes it, and counts the close in /metrics.
#
# Usage: scripts/check-samba-pod.sh      (root; Samba from scripts/apt-packages.txt; the venv)
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "${1:-}" != "--inside" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "check-samba-pod: needs root (namespaces, smbd)" >&2; exit 1; }
  for tool in unshare smbd smbpasswd net testparm setpriv; do
    command -v "$tool" >/dev/null || { echo "check-samba-pod: $tool not found (scripts/setup.sh installs Samba)" >&2; exit 1; }
  done
  .venv/bin/python -c 'import smbprotocol, yaml' 2>/dev/null ||
    { echo "check-samba-pod: the venv lacks smbprotocol or PyYAML; run scripts/setup.sh" >&2; exit 1; }
  cargo build --quiet --locked --bin share-hygiene || exit 1
  exec unshare --mount --net --pid --fork --mount-proc "$0" --inside
fi

# ---- inside the pod's namespaces (PID 1 here: everything started dies with this script)
bin=${SHARE_HYGIENE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/share-hygiene}
py=$repo/.venv/bin/python
work=$(mktemp -d)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 20 "$2" | sed 's/^/    /'
}
finish() {
  # $work is on the host's /tmp: unmount the overlay that uses it, then remove it.
  umount /etc/samba /etc 2>/dev/null
  rm -rf "$work"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

mount --make-rprivate /
ip link set lo up

fresh_etc() {
  rm -rf "$work/etc-upper" "$work/etc-work"
  mkdir -p "$work/etc-upper" "$work/etc-work"
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$work/etc-upper,workdir=$work/etc-work" /etc
  mount -t tmpfs tmpfs /etc/samba
  # The ConfigMap, as mounted at /etc/samba.
  "$py" - "$repo/deploy/samba/samba-config.yaml" <<'EOF'
import sys, yaml
for key, value in yaml.safe_load(open(sys.argv[1]))["data"].items():
    open(f"/etc/samba/{key}", "w").write(value)
EOF
}
for d in /var/lib/samba /run/samba /var/cache/samba /var/log/samba /srv; do
  mkdir -p "$d" && mount -t tmpfs tmpfs "$d"
done
fresh_etc

export SAMBA_ADMIN_USER=hygiene SAMBA_ADMIN_PASSWORD="Check-$(head -c 9 /dev/urandom | base64 | tr -d '/+=')-1"
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Its own session, as in a container: smbd signals its whole process group when it stops.
setsid /bin/sh /etc/samba/start-samba.sh >"$work/smbd.log" 2>&1 &
smbd_shell=$!
if wait_port 445 && grep -q 'hygiene' /etc/passwd; then ok "start-samba.sh: admin login created, smbd on 445"; else fail "start-samba.sh: smbd did not start" "$work/smbd.log"; finish; fi

# A container restart: the processes and the root filesystem go, the volumes stay.
kill "$smbd_shell" 2>/dev/null
for p in $(pgrep -x smbd) $(pgrep -f samba-dcerpcd) $(pgrep -f '^/usr/libexec/samba/rpcd_'); do kill "$p" 2>/dev/null; done
for _ in $(seq 50); do pgrep -x smbd >/dev/null || break; sleep 0.1; done
rm -rf /run/samba/* /var/cache/samba/*
umount /etc/samba && umount /etc && fresh_etc
# Its own session, as in a container: smbd signals its whole process group when it stops.
setsid /bin/sh /etc/samba/start-samba.sh >"$work/smbd2.log" 2>&1 &
if wait_port 445 && ! grep -qi 'fail\|error' "$work/smbd2.log"; then ok "start-samba.sh again after a restart (state kept)"; else fail "start-samba.sh after a restart" "$work/smbd2.log"; finish; fi

# The sidecar, with samba.yaml's arguments and capabilities.
export SHARE_HYGIENE_ACCOUNT_KEY AZURE_STORAGE_KEY
SHARE_HYGIENE_ACCOUNT_KEY=$(head -c 32 /dev/urandom | base64)
AZURE_STORAGE_KEY=$SHARE_HYGIENE_ACCOUNT_KEY
mapfile -t sidecar_args < <("$py" - "$repo/deploy/samba/samba.yaml" <<'EOF'
import sys, yaml
pod = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]
c = next(c for c in pod["containers"] if c["name"] == "handle-service")
print("\n".join(a.replace("--listen=0.0.0.0:", "--listen=127.0.0.1:") for a in c["args"]))
EOF
)
SHARE_HYGIENE_SAMBA_USER=$SAMBA_ADMIN_USER SHARE_HYGIENE_SAMBA_PASSWORD=$SAMBA_ADMIN_PASSWORD \
  setpriv --bounding-set=-all,+dac_override --inh-caps=-all --no-new-privs \
  "$bin" "${sidecar_args[@]}" >"$work/sidecar.log" 2>&1 &
sidecar=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:10004/readyz >/dev/null && break; sleep 0.1; done
caps=$(grep CapEff "/proc/$sidecar/status" 2>/dev/null | awk '{print $2}')
shares_served() {
  local share
  for share in projects home; do
    "$bin" handles list --share-url "http://127.0.0.1:10004/files/$share" >>"$work/sidecar.log" 2>&1 || return 1
  done
}
if curl -sf 127.0.0.1:10004/readyz >/dev/null && shares_served && [ "$caps" = 0000000000000002 ]; then
  ok "sidecar ready with DAC_OVERRIDE only, serving both shares of smb.conf"
else
  fail "sidecar not ready (effective capabilities ${caps:-?})" "$work/sidecar.log"
  finish
fi

# An SMB client holds a file open; the sidecar lists it and closes it.
"$py" - >"$work/client.log" 2>&1 <<'EOF' &
import os, time, uuid
from smbprotocol.connection import Connection
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect
from smbprotocol.open import (CreateDisposition, CreateOptions, FileAttributes,
    FilePipePrinterAccessMask, ImpersonationLevel, Open, RequestedOplockLevel, ShareAccess)
conn = Connection(uuid.uuid4(), "127.0.0.1", 445)
conn.connect()
session = Session(conn, os.environ["SAMBA_ADMIN_USER"], os.environ["SAMBA_ADMIN_PASSWORD"])
session.connect()
tree = TreeConnect(session, r"\\127.0.0.1\projects")
tree.connect()
f = Open(tree, "report.docx")
f.create(ImpersonationLevel.Impersonation,
         FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
         FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
         CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
         oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
print("holding", flush=True)
for _ in range(300):
    time.sleep(0.1)
    try:
        f.write(b"x", 0)
    except Exception as e:
        print("closed under me:", type(e).__name__, flush=True)
        break
EOF
for _ in $(seq 100); do grep -q holding "$work/client.log" && break; sleep 0.1; done
url=http://127.0.0.1:10004/files/projects
"$bin" handles list --share-url "$url" --recursive >"$work/list.txt" 2>&1
if grep -q 'report.docx' "$work/list.txt"; then ok "lists the handle the SMB client holds"; else fail "the client's handle is not listed" "$work/list.txt"; cat "$work/client.log"; finish; fi
"$bin" handles close --share-url "$url" --all --recursive >"$work/close.txt" 2>&1
for _ in $(seq 50); do grep -q 'closed under me' "$work/client.log" && break; sleep 0.1; done
if grep -q 'closed 1 handle' "$work/close.txt" && grep -q 'closed under me' "$work/client.log"; then
  ok "force-closes it: the client's next write fails"
else
  fail "force close" "$work/close.txt"
  cat "$work/client.log"
fi
if curl -s 127.0.0.1:10004/metrics | grep -q '^share_hygiene_service_handles_closed_total 1$'; then
  ok "/metrics counts the close"
else
  fail "/metrics does not count the close"
fi
finish
