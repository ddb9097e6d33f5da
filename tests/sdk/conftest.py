"""Fixtures: a fresh handle service per test, reached by the official Azure SDK over HTTP.

Every test gets its own service process (it starts in milliseconds), so tests share no state
and can run in any order. The service's log is printed at teardown; pytest shows it only for
failing tests.
"""

from __future__ import annotations

from typing import Callable

import pytest

from sdk_harness import SHARE, HandleService


@pytest.fixture
def start_service(tmp_path) -> Callable[..., HandleService]:
    """A factory: `start_service(shares=[...], close_batch=N, host_name=NAME)` starts a
    seeded service (host-style for `host_name`)."""
    started: list[HandleService] = []

    def start(
        shares: list[dict] | None = None,
        close_batch: int | None = None,
        host_name: str | None = None,
    ) -> HandleService:
        workdir = tmp_path / f"service{len(started)}"
        workdir.mkdir()
        svc = HandleService(
            workdir,
            shares if shares is not None else [{"name": SHARE}],
            close_batch=close_batch,
            host_name=host_name,
        )
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()
        print(f"--- handle service on port {svc.port} ---\n{svc.stderr()}")


@pytest.fixture
def service(start_service) -> HandleService:
    """A service with one empty share, `myshare`; tests open handles through the admin API."""
    return start_service()
