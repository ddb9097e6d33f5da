#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-client-vs-sdk.sh into the Markdown table of
docs/benchmarks.md ("Client vs Python SDK"): per operation, each client's wall time,
throughput, requests and CPU, and our client's ratios to the SDK's."""

from __future__ import annotations

import json
import sys
from collections import defaultdict

OPERATIONS = [
    ("list", "(i) list every handle (recursive, pages of 5,000)"),
    ("close-each", "(ii) close each handle by id through its own path"),
    ("close-all", "(iii) wildcard close, `*` recursive on the share root"),
]


def label(r: dict) -> str:
    name = r["client"]
    if r["mode"] == "close-each":
        name += " sequential" if r["concurrency"] == 1 else f", {r['concurrency']} in flight"
    if r.get("runtime") == "current":
        name += " (current-thread runtime)"
    return name


def main(path: str) -> int:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    by_mode = defaultdict(list)
    for r in rows:
        by_mode[r["mode"]].append(r)
    print("| operation | client | handles | wall s | handles/s | requests | CPU user+sys s | CPU µs/handle |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, title in OPERATIONS:
        for r in by_mode.get(mode, []):
            cpu = r["cpu_user_s"] + r["cpu_sys_s"]
            n = max(r["handles"], 1)
            print(
                f"| {title} | {label(r)} | {r['handles']:,} | {r['wall_s']:.2f} | "
                f"{r['handles'] / r['wall_s']:,.0f} | {r['requests']:,} | "
                f"{r['cpu_user_s']:.2f}+{r['cpu_sys_s']:.2f} | {cpu / n * 1e6:.1f} |"
            )
    print()
    print("Ratios (ours / the SDK's; throughput = handles per second of wall time, CPU = client CPU per handle):")
    print()
    print("| operation | ours | SDK | throughput ratio | CPU ratio (SDK / ours) |")
    print("|---|---|---|---|---|")

    def pick(mode, client_prefix, concurrency=None):
        for r in by_mode.get(mode, []):
            if (
                r["client"].startswith(client_prefix)
                and (concurrency is None or r["concurrency"] == concurrency)
                and r.get("runtime", "multi") == "multi"
            ):
                return r
        return None

    pairs = [
        ("list", None, None),
        ("close-each", 1, 1),
        ("close-each", "pool", "pool"),
        ("close-all", None, None),
    ]
    for mode, ours_c, sdk_c in pairs:
        if ours_c == "pool":
            sdk = next((r for r in by_mode.get(mode, []) if r["client"].startswith("azure") and r["concurrency"] > 1), None)
            ours = pick(mode, "share-hygiene (Rust)", sdk["concurrency"]) if sdk else None
        else:
            ours = pick(mode, "share-hygiene (Rust)", ours_c)
            sdk = pick(mode, "azure", sdk_c)
        if not ours or not sdk:
            continue
        tput = (ours["handles"] / ours["wall_s"]) / (sdk["handles"] / sdk["wall_s"])
        cpu_ours = (ours["cpu_user_s"] + ours["cpu_sys_s"]) / max(ours["handles"], 1)
        cpu_sdk = (sdk["cpu_user_s"] + sdk["cpu_sys_s"]) / max(sdk["handles"], 1)
        cpu_ratio = f"{cpu_sdk / cpu_ours:.1f}×" if cpu_ours > 0 else "n/a (ours below the clock tick)"
        print(f"| {mode} | {label(ours)} | {label(sdk)} | {tput:.1f}× | {cpu_ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
