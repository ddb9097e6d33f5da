"""`share-hygiene sweep` end to end on Samba: a real smbd, SMB clients holding handles, the
handle service (`--backend samba`) over HTTP, and the sweep binary with a policy file and a
`--secrets` file, exactly as an operator would run it outside Kubernetes.

The share `sweep` holds handles in two places:

- `logs/` (in scope): the directory, a file opened twice, files of a second client, a nested
  file; all held longer than the stale threshold. Just before the enforce sweep a second
  client opens `logs/fresh.log`, which is too young to be stale.
- `data/` (`match.exclude: ["data/**"]`, out of scope): the directory and files, some held by
  the same connection as condemned `logs/` handles, so closing must be per handle, not per
  client.

The sweep runs three times over the same handles:

1. policy `mode: DryRun`: every stale handle is reported `WouldClose`; nothing is closed.
2. policy `mode: Enforce` with `--dry-run`: the flag wins; same report, nothing closed.
3. policy `mode: Enforce`: every stale `logs/` handle is `Closed`; their next READ, FLUSH
   (QUERY_DIRECTORY for the directory) fails with STATUS_FILE_CLOSED, while every `data/`
   handle and the fresh `logs/` handle keep working.

Open times are whole seconds (smbstatus), so a handle's age as the sweep sees it is its real
age plus up to 1 s: with `openLongerThan: 3s` the stale handles are made older than 3 s
(waited for), and the fresh one must be younger than 2 s when the enforce sweep classifies it
(checked with the clock, so a slow machine fails loudly instead of flaking).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from samba_harness import ACCOUNT, STATUS_FILE_CLOSED, Held, SmbClient, wait_status

CLOSED = "0x%08x" % STATUS_FILE_CLOSED
SHARE = "sweep"
SECRET = "samba-handle-service"
STALE_AFTER = 3  # seconds: the policy's openLongerThan


def policy(port: int, mode: str) -> str:
    return f"""apiVersion: sharehygiene.io/v1alpha1
kind: HandlePolicy
metadata:
  name: samba-sweep-e2e
  namespace: storage
spec:
  mode: {mode}
  shares:
    - endpoint: http://127.0.0.1:{port}/{ACCOUNT}
      share: {SHARE}
      credentialsSecretRef: {{ name: {SECRET} }}
  match:
    exclude: ["data/**"]
  rules:
    stale:
      openLongerThan: {STALE_AFTER}s
  limits:
    maxClosesPerSweep: 100
    # 5 of 9 (then 10) observed handles are condemned: above the default 50%.
    safetyValvePercent: 80
"""


def run_sweep(lab, svc, policy_file: Path, secrets_file: Path, *flags: str) -> tuple[int, dict, str]:
    """Runs `share-hygiene sweep -o json` in the lab's namespace with a clean environment (no
    AZURE_* variables: the credential comes from --secrets only)."""
    cmd = lab.netns.exec_prefix() + [
        svc.bin, "sweep", "-f", str(policy_file), "--secrets", str(secrets_file), "-o", "json", *flags,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "RUST_LOG": "share_hygiene=info"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"sweep {flags} exited {p.returncode} without a JSON report\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    print(f"--- sweep {' '.join(flags)} -> exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.returncode, report, p.stderr


def timestamp(rfc3339: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time such as `2026-01-02T03:04:05.123456789Z`."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", rfc3339)
    assert m, rfc3339
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return whole.timestamp() + float(m.group(2) or 0)


def client_ip(c: SmbClient) -> str:
    return "127.0.0.1:%d" % c.conn.transport._sock.getsockname()[1]


def mkdirs(root: Path, *dirs: str):
    for d in dirs:
        path = root
        for part in d.split("/"):
            path = path / part
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o777)  # smbd creates files as the lab's user


def probe_all(handles: list[Held]) -> dict[str, str]:
    """Each handle's READ (QUERY_DIRECTORY) status, keyed `path#n` (a path may be open twice)."""
    seen: Counter = Counter()
    out = {}
    for h in handles:
        seen[h.path] += 1
        out[f"{h.path}#{seen[h.path]}"] = h.probe()
    return out


def test_sweep_closes_stale_handles_in_scope_and_nothing_else(samba_lab, samba_service, smb_client, tmp_path):
    root = samba_lab.share_path(SHARE)
    mkdirs(root, "logs/archive", "data/shard")
    (root / "data/shard/part-1.bin").write_bytes(b"part\n")  # opened read-only below: not empty

    # --- handles: three connections (three smbd processes) -----------------------------
    a, b, c = smb_client(SHARE), smb_client(SHARE), smb_client(SHARE)
    stale = [
        a.open_dir("logs"),
        a.open_file("logs/app.log"),
        a.open_file("logs/app.log", write=False),  # a second open of the same file
        b.open_file("logs/worker.log"),
        b.open_file("logs/archive/2024.log"),
    ]
    excluded = [
        a.open_file("data/db.bin"),  # same connection as condemned handles
        c.open_dir("data"),
        c.open_file("data/shard/part-0.bin"),
        c.open_file("data/shard/part-1.bin", write=False),
    ]
    opened = time.time()
    holder = {id(h): ip for ip, hs in ((client_ip(a), a.held), (client_ip(b), b.held)) for h in hs}
    want_condemned = Counter(h.path for h in stale)

    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"{SECRET}:\n  accountName: {ACCOUNT}\n  accountKey: {samba_service.key}\n")
    os.chmod(secrets, 0o600)
    dry_policy = tmp_path / "policy-dryrun.yaml"
    dry_policy.write_text(policy(samba_service.port, "DryRun"))
    enforce_policy = tmp_path / "policy-enforce.yaml"
    enforce_policy.write_text(policy(samba_service.port, "Enforce"))

    # Older than the threshold even at whole-second open times (the age only grows by rounding).
    time.sleep(max(0.0, opened + STALE_AFTER + 0.3 - time.time()))
    all_ok = probe_all(stale + excluded)
    assert all_ok == {k: "OK" for k in all_ok}

    def check_dry_run(rc: int, r: dict, stderr: str, what: str):
        assert rc == 0, f"{what}: exit {rc}\n{stderr}"
        assert r["mode"] == "DryRun", what
        (s,) = r["shares"]
        assert "error" not in s, (what, s)
        assert (s["share"], s["seen"]) == (SHARE, 9), (what, s)
        assert s["kept"] == {"OutOfScope": 4}, (what, s)
        assert s["condemned"] == {"Stale": 5}, (what, s)
        assert (s["closed"], s["failed"], s["gone"]) == ({}, {}, 0), (what, s)
        assert s["notClosed"] == {"DryRun": 5}, (what, s)
        assert Counter(d["path"] for d in r["decisions"]) == want_condemned, what
        assert {(d["reason"], d["outcome"]) for d in r["decisions"]} == {("Stale", "WouldClose")}, what
        assert r["wildcards"] == [] and "safetyValve" not in r and r["interrupted"] is False, what
        # Nothing was closed: every handle still reads.
        assert probe_all(stale + excluded) == all_ok, what
        return {d["handleId"] for d in r["decisions"]}

    # --- 1. the policy's DryRun mode ------------------------------------------------------
    dry_ids = check_dry_run(*run_sweep(samba_lab, samba_service, dry_policy, secrets), "mode: DryRun")
    assert len(dry_ids) == 5

    # --- 2. --dry-run overrides mode: Enforce --------------------------------------------
    flag_ids = check_dry_run(
        *run_sweep(samba_lab, samba_service, enforce_policy, secrets, "--dry-run"), "Enforce + --dry-run"
    )
    assert flag_ids == dry_ids, "handle ids are stable between sweeps"

    # --- 3. Enforce ------------------------------------------------------------------------
    fresh_opened = time.time()  # at or before its open time
    fresh = b.open_file("logs/fresh.log")
    rc, r, stderr = run_sweep(samba_lab, samba_service, enforce_policy, secrets)
    # The sweep classifies at its `started` time (whole-second open times add up to 1 s).
    classified = timestamp(r["started"])
    assert classified - fresh_opened < STALE_AFTER - 1, (
        f"the enforce sweep started {classified - fresh_opened:.2f}s after logs/fresh.log was opened: "
        "too late for it to count as fresh"
    )
    assert rc == 0, f"exit {rc}\n{stderr}\n{json.dumps(r, indent=1)}"
    assert r["mode"] == "Enforce"
    (s,) = r["shares"]
    assert "error" not in s, s
    assert s["seen"] == 10
    assert s["kept"] == {"OutOfScope": 4, "NotCondemned": 1}
    assert s["condemned"] == {"Stale": 5}
    assert s["closed"] == {"Stale": 5}
    assert (s["failed"], s["gone"], s["notClosed"]) == ({}, 0, {})
    assert r["wildcards"] == [] and "safetyValve" not in r and r["interrupted"] is False
    assert len(r["decisions"]) == 5
    assert {d["handleId"] for d in r["decisions"]} == dry_ids
    assert Counter(d["path"] for d in r["decisions"]) == want_condemned
    assert {(d["reason"], d["outcome"]) for d in r["decisions"]} == {("Stale", "Closed")}
    assert Counter((d["path"], d["clientIp"]) for d in r["decisions"]) == Counter(
        (h.path, holder[id(h)]) for h in stale
    ), "each decision names the connection that held the handle"

    # Every closed handle fails its next I/O with STATUS_FILE_CLOSED (NetFileClose lands
    # about a millisecond after the call returns); every kept handle still works.
    assert set(wait_status(stale, CLOSED).values()) == {CLOSED}
    files = [h for h in stale if not h.directory]
    assert [(h.path, h.probe("flush")) for h in files] == [(h.path, CLOSED) for h in files]
    kept = excluded + [fresh]
    got = probe_all(kept)
    assert got == {k: "OK" for k in got}
    assert {h.path: h.probe("flush") for h in kept if not h.directory and h.path != "data/shard/part-1.bin"} == {
        "data/db.bin": "OK",
        "data/shard/part-0.bin": "OK",
        "logs/fresh.log": "OK",
    }

    # The service (through the Azure SDK, not our client) lists exactly the kept handles.
    def listed():
        return sorted(h.path for h in samba_service.share_client(SHARE).get_directory_client("").list_handles(recursive=True))

    assert samba_service.call(listed) == sorted(h.path for h in kept)
