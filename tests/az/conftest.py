"""Fixtures: one offline `az` for the session, and a fresh seeded handle service per test
(started by the SDK tests' harness, over real HTTP on a loopback port)."""

from __future__ import annotations

import pytest

from az_harness import SHARE, Az, HandleService

# One share with handles on its root, a directory, files at two depths, and a file in the root.
SEED = [
    {
        "name": SHARE,
        "directories": ["docs/deep", "empty"],
        "handles": [
            {"path": "", "client": "10.0.0.2:445", "clientName": "rootclient"},
            {"path": "docs", "directory": True, "client": "10.0.0.3:445"},
            {"path": "docs/report.txt", "client": "10.0.0.1:445", "count": 3},
            {"path": "docs/deep/notes.md", "client": "10.0.0.4:445"},
            {"path": "top.bin", "client": "10.0.0.5:445"},
        ],
    },
    {"name": "othershare"},
]


@pytest.fixture(scope="session")
def az(tmp_path_factory) -> Az:
    return Az(tmp_path_factory.mktemp("azure-config"))


@pytest.fixture
def svc(tmp_path):
    service = HandleService(tmp_path, SEED).start()
    yield service
    service.stop()
    print(f"--- handle service on port {service.port} ---\n{service.stderr()}")
