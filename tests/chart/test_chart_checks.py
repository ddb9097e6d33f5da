"""Runs the deployment checks under pytest, so `scripts/test.sh` (and CI) runs them too.

Each script prints one line per check and ends with `N passed, N failed`; a failure here shows
that output. They fail (never skip) when a tool is missing: helm comes from the npm registry
through scripts/setup-helm.sh, promtool from Debian's prometheus package and kubernetes-validate
from tests/requirements.txt, all installed by scripts/setup.sh.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_check(script: str, timeout: int = 900) -> None:
    proc = subprocess.run(
        [str(REPO / "scripts" / script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, f"scripts/{script} failed:\n{output}"
    assert lines and lines[-1].endswith(" 0 failed"), f"scripts/{script} printed no summary:\n{output}"


def test_chart():
    """helm lint/template, kubernetes-validate 1.33-1.37, CRD and manifest freshness, example
    policies against the CRD, RBAC, pod security, the Deployment's contract."""
    run_check("check-chart.sh")


def test_observability():
    """promtool check/test rules, the chart's PrometheusRule, dashboard PromQL, catalog metrics."""
    run_check("check-observability.sh")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs smbd in new namespaces: needs root")
def test_samba_pod():
    """deploy/samba's smb.conf, start script and sidecar, run without Kubernetes."""
    run_check("check-samba-pod.sh", timeout=600)
