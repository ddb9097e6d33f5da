#!/usr/bin/env python3
"""The Python SDK's side of the client-vs-SDK benchmark (azure-storage-file-share).

    sdk_bench.py MODE --url http://127.0.0.1:PORT/ACCOUNT/SHARE [--concurrency N] [--page-size N]
    (the account key in BENCH_ACCOUNT_KEY)

Modes mirror benches/client_vs_sdk.rs:
  list             list_handles(recursive=True) on the share root, every page
  close-each       list (untimed), then close_handle() each handle through its own path, one
                   after another
  close-each-pool  the same with a thread pool of --concurrency workers
  close-all        close_all_handles(recursive=True) on the share root

Prints one JSON line: wall time, HTTP requests sent (counted at the transport), and this
process's user and system CPU (resource.getrusage) for the timed part.

Also: `sdk_bench.py seed --out FILE --handles N --per-file M --share NAME` writes a seed for
`share-hygiene handle-service`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def write_seed(out: str, share: str, handles: int, per_file: int, dirs: int) -> None:
    files = -(-handles // per_file)
    lines = ["shares:", f"  - name: {share}", "    handles:"]
    left = handles
    for f in range(files):
        count = min(per_file, left)
        left -= count
        c = f % 50
        lines += [
            f"      - path: dir{f % dirs:02}/file{f:05}.dat",
            f'        client: "10.244.{c // 10}.{c % 10 + 1}:{40000 + c}"',
            f"        clientName: node-{c}",
            "        age: 2h",
            f"        count: {count}",
        ]
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["list", "close-each", "close-each-pool", "close-all", "seed"])
    p.add_argument("--url", help="http://HOST:PORT/ACCOUNT/SHARE")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--page-size", type=int, default=5000)
    p.add_argument("--out")
    p.add_argument("--share", default="benchshare")
    p.add_argument("--handles", type=int, default=100_000)
    p.add_argument("--per-file", type=int, default=100)
    p.add_argument("--dirs", type=int, default=10)
    args = p.parse_args()

    if args.mode == "seed":
        write_seed(args.out, args.share, args.handles, args.per_file, args.dirs)
        return 0

    # Imported here so that `seed` needs no SDK.
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.fileshare import ShareClient
    from urllib3.util.retry import Retry

    class CountingTransport(RequestsTransport):
        """Counts every HTTP request the SDK sends (retries included)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.requests = 0
            self._lock = threading.Lock()

        def send(self, request, **kwargs):
            with self._lock:
                self.requests += 1
            return super().send(request, **kwargs)

    parts = urlsplit(args.url)
    account, share_name = [s for s in parts.path.split("/") if s][:2]
    endpoint = f"{parts.scheme}://{parts.netloc}/{account}"
    # The SDK's own transport setup, with a connection pool as large as the thread pool so that
    # it is not the bottleneck (requests' default keeps 10 connections per host).
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1,
        pool_maxsize=max(10, args.concurrency),
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    transport = CountingTransport(session=session, session_owner=False)
    credential = {"account_name": account, "account_key": os.environ["BENCH_ACCOUNT_KEY"]}
    share = ShareClient(endpoint, share_name, credential=credential, transport=transport)
    root = share.get_directory_client("")

    def list_all():
        return list(root.list_handles(recursive=True, results_per_page=args.page_size))

    file_clients = {}

    def client_for(path):
        c = file_clients.get(path)
        if c is None:
            c = file_clients[path] = share.get_file_client(path)
        return c

    handles = list_all() if args.mode.startswith("close-each") else None
    if handles is not None:
        for h in handles:  # untimed: one client per path, as the SDK user would keep them
            client_for(h.path)

    requests_before = transport.requests
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    failed = 0
    if args.mode == "list":
        count = len(list_all())
    elif args.mode == "close-each":
        count = 0
        for h in handles:
            r = client_for(h.path).close_handle(h)
            count += r["closed_handles_count"]
            failed += r["failed_handles_count"]
    elif args.mode == "close-each-pool":
        def close(h):
            return client_for(h.path).close_handle(h)

        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(close, handles))
        count = sum(r["closed_handles_count"] for r in results)
        failed = sum(r["failed_handles_count"] for r in results)
    else:
        r = root.close_all_handles(recursive=True)
        count, failed = r["closed_handles_count"], r["failed_handles_count"]
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "client": "azure-storage-file-share (Python)",
                "mode": "close-each" if args.mode == "close-each-pool" else args.mode,
                "concurrency": args.concurrency if args.mode == "close-each-pool" else 1,
                "handles": count,
                "failed": failed,
                "wall_s": wall,
                "requests": transport.requests - requests_before,
                "cpu_user_s": r1.ru_utime - r0.ru_utime,
                "cpu_sys_s": r1.ru_stime - r0.ru_stime,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
