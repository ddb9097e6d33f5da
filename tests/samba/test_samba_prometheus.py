"""Prometheus scrapes the Samba handle service (the sidecar's process, on a real smbd) and
answers every query of the dashboard's "Handle services" row from what it scraped.

Runs Debian's `prometheus` inside the lab's network namespace, where the service listens.
"""

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from samba_harness import REPO, STATUS_FILE_CLOSED, wait_status

PROM_PORT = 19090
DASHBOARD = REPO / "charts" / "share-hygiene" / "files" / "dashboards" / "share-hygiene.json"


def service_queries() -> dict[str, list[str]]:
    """The dashboard's handle-service queries by panel title, `$__rate_interval` filled in as
    Grafana would for a 1 s scrape interval (at least four scrapes)."""
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    out: dict[str, list[str]] = {}
    for p in walk(json.loads(DASHBOARD.read_text())["panels"]):
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if "share_hygiene_service_" in expr:
                out.setdefault(p["title"], []).append(expr.replace("$__rate_interval", "30s"))
    return out


def test_prometheus_scrapes_the_samba_handle_service(samba_lab, samba_service, smb_client):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is not installed (scripts/setup.sh installs it)"
    queries = service_queries()
    assert len(queries) >= 4, f"the dashboard's handle-service panels: {sorted(queries)}"

    held = smb_client("data").open_file("prom-held.txt")
    work = Path(tempfile.mkdtemp(prefix="sh-samba-prom-"))
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: samba-handles\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{samba_service.port}']\n"
    )
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        samba_lab.netns.exec_prefix()
        + [
            prometheus,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        samba_lab.wait_port(PROM_PORT, what="prometheus", proc=proc)

        def query(expr: str) -> list[dict]:
            url = f"http://127.0.0.1:{PROM_PORT}/api/v1/query?query={urllib.parse.quote(expr)}"

            def get():
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)

            answer = samba_lab.netns.call(get)
            assert answer["status"] == "success", f"{expr}: {answer}"
            return answer["data"]["result"]

        def until(expr: str, ok, what: str, timeout: float = 30.0) -> list[dict]:
            deadline = time.monotonic() + timeout
            while True:
                result = query(expr)
                if ok(result):
                    return result
                assert time.monotonic() < deadline, f"{what}: {expr} gave {result}"
                time.sleep(0.5)

        # Traffic the panels can see: listings, and a close of the held handle.
        share = samba_service.share_client("data")
        for _ in range(3):
            samba_service.call(lambda: list(share.get_directory_client("").list_handles(recursive=True)))
        until('up{job="samba-handles"}', lambda r: r and r[0]["value"][1] == "1", "scraped")
        until(
            "share_hygiene_service_store_handles",
            lambda r: r and float(r[0]["value"][1]) >= 1,
            "the held handle in the store's size",
        )
        closed = samba_service.call(lambda: share.get_file_client("prom-held.txt").close_all_handles())
        assert closed["closed_handles_count"] == 1, closed
        time.sleep(3)  # a few scrapes after the close, so rate() sees it

        empty = []
        for title, exprs in queries.items():
            for expr in exprs:
                result = until(expr, lambda r: len(r) > 0, f"panel {title!r}", timeout=20.0)
                if not result:
                    empty.append(title)
        assert not empty, f"panels with no series: {empty}"
        assert set(wait_status([held], "0x%08x" % STATUS_FILE_CLOSED).values()) == {"0x%08x" % STATUS_FILE_CLOSED}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
