"""Small helpers shared by the SDK tests."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from azure.storage.fileshare import Handle, ShareClient


def pages_of(pager) -> list[list[Handle]]:
    """Every page of an SDK `ItemPaged.by_page()`, each materialised as a list."""
    return [list(page) for page in pager]


def ids(handles: Iterable[Handle]) -> list[str]:
    return [h.id for h in handles]


def assert_each_once(seen: list[str], expected: Iterable[str]) -> None:
    """`seen` holds every id of `expected` exactly once and nothing else."""
    counts = Counter(seen)
    twice = sorted((i for i, n in counts.items() if n > 1), key=int)
    assert not twice, f"listed more than once: {twice}"
    missing = sorted(set(expected) - set(seen), key=int)
    assert not missing, f"never listed: {missing}"
    extra = sorted(set(seen) - set(expected), key=int)
    assert not extra, f"listed but not expected: {extra}"


def client_for(share: ShareClient, handle: Handle):
    """The SDK client for the resource a handle is open on (the share root when path is None)."""
    if handle.path is None:
        return share.get_directory_client()
    return share.get_file_client(handle.path)


class Recorder:
    """A `raw_response_hook` that keeps every (request, response) pair it sees."""

    def __init__(self) -> None:
        self.exchanges: list = []

    def __call__(self, pipeline_response) -> None:
        self.exchanges.append(
            (pipeline_response.http_request, pipeline_response.http_response)
        )

    @property
    def requests(self):
        return [req for req, _ in self.exchanges]

    @property
    def responses(self):
        return [resp for _, resp in self.exchanges]

    @property
    def last(self):
        return self.exchanges[-1]
