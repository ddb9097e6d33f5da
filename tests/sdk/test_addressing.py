"""Host-style addressing with the official SDK: a service started with `--host-name` serves
`http://HOST_NAME:PORT/{share}/...` (the SDK signs `/{account}/{share}/...`), refuses requests
naming another host, and refuses a path-style request rather than reading its path as another
share's (`/{account}/{share}/x` host-style is share `{account}`, directory `{share}/x`)."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.fileshare import ShareClient, generate_share_sas

from sdk_harness import ACCOUNT, CREDENTIAL, KEY, SHARE
from sdk_util import assert_each_once, ids

# `.test` names never resolve (RFC 6761); this one is mapped to loopback in the test process.
HOST_NAME = f"{ACCOUNT}.file.core.test"


@pytest.fixture(autouse=True)
def host_name_on_loopback(monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.lower() == HOST_NAME:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.fixture
def host_style(start_service):
    # A share named like the account, holding `myshare/x`, beside share `myshare` with `x`.
    return start_service(shares=[{"name": SHARE}, {"name": ACCOUNT}], host_name=HOST_NAME)


def open_handle_count(svc) -> int:
    """All open handles of the store, from the admin endpoint."""
    resp = svc.admin("GET")
    assert resp.status == 200, resp
    return resp.json()["stats"]["handles"]


def test_host_style_sdk_lists_and_closes(host_style):
    opened = host_style.open_handles(SHARE, "x/a.txt", count=3)
    share = host_style.share(SHARE)
    assert share.url == f"http://{HOST_NAME}:{host_style.port}/{SHARE}"
    listed = ids(share.get_directory_client("x").list_handles(recursive=True, results_per_page=2))
    assert_each_once(listed, opened)
    closed = share.get_directory_client("x").close_all_handles(recursive=True)
    assert closed == {"closed_handles_count": 3, "failed_handles_count": 0}


def test_host_style_sdk_with_a_share_sas(host_style):
    opened = host_style.open_handles(SHARE, "x/a.txt", count=2)
    sas = generate_share_sas(
        ACCOUNT, SHARE, KEY, permission="rl", expiry=datetime.now(timezone.utc) + timedelta(hours=1)
    )
    share = host_style.share(SHARE, credential=sas)
    assert_each_once(ids(share.get_directory_client().list_handles(recursive=True)), opened)


def test_other_hosts_are_refused(host_style):
    host_style.open_handles(SHARE, "x/a.txt", count=1)
    for url in [f"http://127.0.0.1:{host_style.port}", f"http://localhost:{host_style.port}"]:
        share = ShareClient(url, SHARE, credential=CREDENTIAL, retry_total=0)
        with pytest.raises(HttpResponseError) as exc:
            share.get_directory_client("x").close_all_handles(recursive=True)
        assert exc.value.status_code == 400, exc.value
        assert exc.value.error_code == "InvalidHeaderValue", exc.value
    assert open_handle_count(host_style) == 1


def test_the_share_named_like_the_account_is_not_served_host_style(host_style):
    """`/{account}/myshare/x` host-style is share `{account}`; path-style it is share `myshare`
    under the same signature. So host-style never serves a share named like the account, and
    a path-style request replayed here never reaches it."""
    host_style.open_handles(ACCOUNT, f"{SHARE}/x/a.txt", count=2)
    host_style.open_handles(SHARE, "x/a.txt", count=2)
    account_share = host_style.share(ACCOUNT)
    assert account_share.url == f"http://{HOST_NAME}:{host_style.port}/{ACCOUNT}"
    with pytest.raises(HttpResponseError) as exc:
        account_share.get_directory_client(f"{SHARE}/x").close_all_handles(recursive=True)
    assert exc.value.status_code == 400, exc.value
    assert exc.value.error_code == "InvalidUri", exc.value
    assert open_handle_count(host_style) == 4
