"""Benchmark of the Samba store: list and force-close with N open handles (run as root).

    .venv/bin/python tests/samba/bench_samba.py --handles 1000 5000 --parallelism 4

For each N it starts a fresh lab (smbd in a network namespace), holds N files open from one
SMB connection, then times:
  - the raw listing tools (smbstatus -L -f text, smbstatus -L --json for comparison,
    smbstatus -p --json, net rpc file), median of 3;
  - List Handles through the Azure SDK (recursive, pages of 5,000), and where the service's
    time went (its debug log: time in each tool, parsing);
  - Force Close Handles `*` recursive through the SDK (batches of 1,000), and where it went
    (listing per batch vs NetFileClose calls);
and checks that closed handles answer STATUS_FILE_CLOSED. Prints one JSON line per N.
Not collected by pytest (the name does not start with test_).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from samba_harness import (  # noqa: E402
    SambaHandleService,
    SambaLab,
    STATUS_FILE_CLOSED,
    is_root,
    wait_status,
)


def timed(cmd: list[str], runs: int = 3) -> dict:
    secs, rss, size = [], [], 0
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True)
        secs.append(time.perf_counter() - t)
        rss.append(int(p.stderr.decode().strip().splitlines()[-1]))
        size = len(p.stdout)
    return {"median_s": round(statistics.median(secs), 3), "max_rss_mb": round(max(rss) / 1024), "bytes": size}


def service_events(svc: SambaHandleService, since: int) -> list[dict]:
    out = []
    for line in svc.log().splitlines()[since:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def summarize(events: list[dict], message: str) -> dict:
    rows = [e["fields"] for e in events if e.get("fields", {}).get("message") == message]
    keys = sorted({k for r in rows for k in r if k.endswith("_ms")})
    return {"calls": len(rows), **{k: sum(r.get(k, 0) for r in rows) for k in keys}}


def bench(n: int, parallelism: int) -> dict:
    lab = SambaLab(shares=("data",)).start()
    svc = SambaHandleService(lab, close_batch=1000, extra_args=("--samba-close-parallelism", str(parallelism)))
    svc.env["RUST_LOG"] = "share_hygiene=debug"
    svc.start()
    result: dict = {"handles": n, "close_parallelism": parallelism}
    try:
        client = lab.client("data")
        t = time.perf_counter()
        client.open_dir("bench")
        files = [client.open_file(f"bench/f{i:05d}.txt") for i in range(n - 1)]
        result["open_s"] = round(time.perf_counter() - t, 1)
        conf = str(lab.conf)
        ns = lab.netns.exec_prefix()
        creds = ["env", f"USER={lab.USER}", f"PASSWD={lab.PASSWORD}"]
        result["tools"] = {
            "smbstatus -L -f (text)": timed(["smbstatus", "-s", conf, "-L", "-f"]),
            "smbstatus -L --json": timed(["smbstatus", "-s", conf, "-L", "--json"]),
            "smbstatus -p --json": timed(["smbstatus", "-s", conf, "-p", "--json"]),
            "net rpc file (NetFileEnum)": timed(ns + creds + ["net", "-s", conf, "rpc", "file", "-S", "127.0.0.1"]),
        }

        def list_all():
            d = svc.share_client("data").get_directory_client("bench")
            return list(d.list_handles(recursive=True))

        mark = len(svc.log().splitlines())
        t = time.perf_counter()
        handles = svc.call(list_all)
        result["list_s"] = round(time.perf_counter() - t, 3)
        assert len(handles) == n, (len(handles), n)
        result["list_breakdown"] = summarize(service_events(svc, mark), "samba: observed opens")

        def close_all():
            d = svc.share_client("data").get_directory_client("bench")
            return d.close_all_handles(recursive=True)

        mark = len(svc.log().splitlines())
        t = time.perf_counter()
        counts = svc.call(close_all)
        result["close_s"] = round(time.perf_counter() - t, 1)
        result["close_counts"] = counts
        events = service_events(svc, mark)
        result["close_breakdown"] = {
            "listing per batch": summarize(events, "samba: observed opens"),
            "NetFileClose": summarize(events, "samba: force close batch"),
        }
        sample = files[:: max(1, len(files) // 50)]
        statuses = set(wait_status(sample, "0x%08x" % STATUS_FILE_CLOSED).values())
        result["closed_sample_statuses"] = sorted(statuses)
        client.close()
    finally:
        svc.stop()
        lab.stop()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handles", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--parallelism", type=int, nargs="+", default=[4])
    a = ap.parse_args()
    if not is_root():
        sys.exit("the Samba benchmark needs root")
    for n in a.handles:
        for p in a.parallelism:
            print(json.dumps(bench(n, p)), flush=True)


if __name__ == "__main__":
    main()
