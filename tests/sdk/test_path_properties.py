"""Get Directory Properties and Get File Properties, through the official SDK's `exists()`,
`get_directory_properties()` and `get_file_properties()`: what `az` and the SDKs ask before
they list or close handles on a path."""

from __future__ import annotations

import http.client
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.fileshare import generate_share_sas

from sdk_harness import ACCOUNT, KEY, SHARE
from sdk_signing import signed_headers

SHARES = [
    {
        "name": SHARE,
        "directories": ["docs", "docs/deep"],
        "files": ["docs/report.txt", "top.bin"],
    }
]


@pytest.fixture
def svc(start_service):
    return start_service(shares=SHARES)


def test_directories_exist_with_their_properties(svc):
    share = svc.share(SHARE)
    for path in ["", "docs", "docs/deep", "DOCS/Deep"]:
        d = share.get_directory_client(path)
        assert d.exists(), path
        props = d.get_directory_properties()
        assert props.file_attributes == "Directory"
        assert props.etag.startswith('"0x')
        assert props.last_modified is not None
        assert props.creation_time is not None and props.change_time is not None
        assert props.last_write_time is not None
        assert props.permission_key
        assert props.server_encrypted is False
    root = share.get_directory_client("").get_directory_properties()
    docs = share.get_directory_client("docs").get_directory_properties()
    deep = share.get_directory_client("docs/deep").get_directory_properties()
    assert (root.file_id, root.parent_id) == ("0", "0")
    assert docs.parent_id == "0" and docs.file_id not in ("0", None)
    assert deep.parent_id == docs.file_id


def test_files_exist_with_their_properties(svc):
    share = svc.share(SHARE)
    docs = share.get_directory_client("docs").get_directory_properties()
    f = share.get_file_client("docs/report.txt")
    assert f.exists()
    props = f.get_file_properties()
    assert props.size == 0
    assert props.file_attributes == "Archive"
    assert props.parent_id == docs.file_id
    assert props.file_id not in ("0", None)
    assert props.etag.startswith('"0x')
    assert props.lease.state == "available"
    assert share.get_file_client("top.bin").get_file_properties().parent_id == "0"


@pytest.mark.parametrize("path", ["docs/report.txt", "top.bin", "nope", "docs/nope", "nope/x"])
def test_a_directory_client_on_a_file_or_a_missing_path_does_not_exist(svc, path):
    d = svc.share(SHARE).get_directory_client(path)
    assert d.exists() is False
    with pytest.raises(ResourceNotFoundError) as exc:
        d.get_directory_properties()
    assert exc.value.status_code == 404


@pytest.mark.parametrize("path", ["docs", "docs/deep", "nope", "docs/nope.txt", "nope/x.txt"])
def test_a_file_client_on_a_directory_or_a_missing_path_does_not_exist(svc, path):
    f = svc.share(SHARE).get_file_client(path)
    assert f.exists() is False
    with pytest.raises(ResourceNotFoundError) as exc:
        f.get_file_properties()
    assert exc.value.status_code == 404


@pytest.mark.parametrize(
    "path, code",
    [("nope", "ResourceNotFound"), ("nope/x", "ParentNotFound"), ("top.bin/x", "ParentNotFound")],
)
def test_missing_paths_name_what_is_missing(svc, path, code):
    with pytest.raises(ResourceNotFoundError) as exc:
        svc.share(SHARE).get_directory_client(path).get_directory_properties()
    assert exc.value.error_code == code


def test_a_missing_share(svc):
    d = svc.share("noshare").get_directory_client("docs")
    assert d.exists() is False
    with pytest.raises(ResourceNotFoundError) as exc:
        d.get_directory_properties()
    assert exc.value.error_code == "ShareNotFound"
    assert svc.share("noshare").get_file_client("top.bin").exists() is False


def raw(svc, method, path, query="", key=KEY):
    """One signed request; returns (status, headers, body)."""
    raw_path = f"/{ACCOUNT}/{path}"
    headers = signed_headers(method, ACCOUNT, key, raw_path, query, {})
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        conn.request(method, raw_path + (f"?{query}" if query else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_head_errors_carry_the_code_and_no_body(svc):
    status, headers, body = raw(svc, "HEAD", f"{SHARE}/nope.txt")
    assert (status, headers["x-ms-error-code"], body) == (404, "ResourceNotFound", b"")
    status, headers, body = raw(svc, "GET", f"{SHARE}/nope", "restype=directory")
    assert (status, headers["x-ms-error-code"]) == (404, "ResourceNotFound")
    assert b"<Code>ResourceNotFound</Code>" in body


def test_answers_carry_azures_headers(svc):
    status, headers, body = raw(svc, "HEAD", f"{SHARE}/top.bin")
    assert status == 200 and body == b""
    assert headers["x-ms-type"] == "File"
    assert headers["content-length"] == "0"
    for name in ["etag", "last-modified", "x-ms-request-id", "x-ms-version", "date",
                 "x-ms-file-creation-time", "x-ms-file-last-write-time", "x-ms-file-change-time",
                 "x-ms-file-id", "x-ms-file-parent-id", "x-ms-file-permission-key",
                 "x-ms-server-encrypted"]:
        assert name in headers, name
    status, headers, body = raw(svc, "GET", f"{SHARE}/docs", "restype=directory")
    assert (status, body, headers["x-ms-file-attributes"]) == (200, b"", "Directory")
    assert "x-ms-type" not in headers


def test_a_file_download_is_refused_clearly(svc):
    status, headers, _ = raw(svc, "GET", f"{SHARE}/top.bin")
    assert (status, headers["x-ms-error-code"]) == (400, "FeatureNotSupported")


def test_the_wrong_key_is_an_authentication_error(svc):
    wrong = "A" * 86 + "=="
    share = svc.share(SHARE, credential={"account_name": ACCOUNT, "account_key": wrong})
    with pytest.raises(ClientAuthenticationError):
        share.get_directory_client("docs").get_directory_properties()
    status, headers, body = raw(svc, "HEAD", f"{SHARE}/top.bin", key=wrong)
    assert (status, headers["x-ms-error-code"], body) == (403, "AuthenticationFailed", b"")


@pytest.mark.parametrize("permission, allowed", [("r", True), ("rl", True), ("l", False), ("w", False)])
def test_a_share_sas_needs_read(svc, permission, allowed):
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    sas = generate_share_sas(ACCOUNT, SHARE, KEY, permission=permission, expiry=expiry)
    share = svc.share(SHARE, credential=sas)
    if allowed:
        assert share.get_directory_client("docs").exists()
        assert share.get_file_client("top.bin").get_file_properties().file_attributes == "Archive"
    else:
        with pytest.raises(HttpResponseError) as exc:
            share.get_directory_client("docs").get_directory_properties()
        assert exc.value.status_code == 403
        assert exc.value.error_code == "AuthorizationPermissionMismatch"
