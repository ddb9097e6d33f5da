"""Fixtures: one real Samba server (in its own network namespace) for the module, one handle
service over it, and SMB clients that each test opens and closes.

Tests skip only when not root: smbd, smbstatus and network namespaces need it.
"""

from __future__ import annotations

from typing import Callable

import pytest

from samba_harness import SambaHandleService, SambaLab, SmbClient, is_root

# Small, so that `*` closes page with x-ms-marker in tests with a handful of handles.
CLOSE_BATCH = 3


@pytest.fixture(scope="session")
def samba_lab():
    if not is_root():
        pytest.skip("the Samba end-to-end tests need root (smbd, smbstatus, network namespaces)")
    # `sweep` is test_samba_sweep.py's own share: a sweep observes everything on it, so no
    # other test's leftovers (a disconnected durable handle on `data`) may be there.
    lab = SambaLab(shares=("data", "other", "sweep")).start()
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def samba_service(samba_lab):
    svc = SambaHandleService(samba_lab, close_batch=CLOSE_BATCH).start()
    yield svc
    svc.stop()
    print(f"--- handle service log ---\n{svc.log()[-20000:]}")


@pytest.fixture
def smb_client(samba_lab) -> Callable[..., SmbClient]:
    """A factory of SMB clients (one connection each), closed after the test."""
    clients: list[SmbClient] = []

    def make(share: str = "data") -> SmbClient:
        c = samba_lab.client(share)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
