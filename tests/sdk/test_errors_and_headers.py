"""Errors as the SDK surfaces them (missing share or path, bad parameters, forged markers) and
the response headers it can see: request ids, echoed client request id and version, reason
phrases, and the fields each x-ms-version carries."""

from __future__ import annotations

import re
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from sdk_harness import SHARE
from sdk_util import Recorder, assert_each_once, ids

SDK_VERSION = "2026-10-06"  # what azure-storage-file-share 12.27.1 sends by default


def first_page(pageable, token):
    return list(next(pageable.by_page(continuation_token=token)))


# -- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["list", "close_all", "close_one"])
def test_missing_share_is_share_not_found(service, operation):
    root = service.share("nosuchshare").get_directory_client()
    rec = Recorder()
    with pytest.raises(ResourceNotFoundError) as exc:
        if operation == "list":
            list(root.list_handles(recursive=True, raw_response_hook=rec))
        elif operation == "close_all":
            root.close_all_handles(recursive=True, raw_response_hook=rec)
        else:
            root.close_handle("1", raw_response_hook=rec)
    assert exc.value.status_code == 404
    assert exc.value.error_code == "ShareNotFound"
    assert exc.value.reason == "The specified share does not exist."
    assert rec.last[1].headers["x-ms-error-code"] == "ShareNotFound"


@pytest.mark.parametrize(
    "kind,path,code",
    [
        ("file", "dir/missing.txt", "ResourceNotFound"),
        ("file", "missing.txt", "ResourceNotFound"),
        ("dir", "dir/missing", "ResourceNotFound"),
        ("file", "nodir/missing.txt", "ParentNotFound"),
        ("dir", "nodir/deeper/missing", "ParentNotFound"),
    ],
)
def test_missing_path(service, kind, path, code):
    service.open_handles(SHARE, "dir/present.txt")
    share = service.share(SHARE)
    client = share.get_file_client(path) if kind == "file" else share.get_directory_client(path)
    with pytest.raises(ResourceNotFoundError) as exc:
        list(client.list_handles())
    assert (exc.value.status_code, exc.value.error_code) == (404, code)
    with pytest.raises(ResourceNotFoundError) as exc:
        client.close_all_handles()
    assert (exc.value.status_code, exc.value.error_code) == (404, code)


# -- bad parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [0, 5001])
def test_page_size_out_of_range_is_400(service, page_size):
    service.open_handles(SHARE, "f.txt")
    root = service.share(SHARE).get_directory_client()
    with pytest.raises(HttpResponseError) as exc:
        list(root.list_handles(recursive=True, results_per_page=page_size))
    assert exc.value.status_code == 400
    assert exc.value.error_code == "OutOfRangeQueryParameterValue"


def test_largest_page_size_is_accepted(service):
    opened = service.open_handles(SHARE, "f.txt", count=7)
    root = service.share(SHARE).get_directory_client()
    assert_each_once(ids(root.list_handles(recursive=True, results_per_page=5000)), opened)


def test_recursive_on_a_file_is_400(service):
    service.open_handles(SHARE, "d/f.txt")
    as_dir = service.share(SHARE).get_directory_client("d/f.txt")
    with pytest.raises(HttpResponseError) as exc:
        list(as_dir.list_handles(recursive=True))
    assert (exc.value.status_code, exc.value.error_code) == (400, "InvalidHeaderValue")
    # Without recursion a directory client on a file path lists the file's handles.
    assert len(list(as_dir.list_handles(recursive=False))) == 1


@pytest.mark.parametrize(
    "token",
    ["bogus", "1!3!abc", "1!30!AUwAAAAAAAAAAhxj1w4T_1KsBKkAOA", "2!4!AAAA", "!!", "1!0!"],
)
def test_forged_marker_is_400(service, token):
    service.open_handles(SHARE, "f.txt", count=5)
    root = service.share(SHARE).get_directory_client()
    with pytest.raises(HttpResponseError) as exc:
        first_page(root.list_handles(recursive=True, results_per_page=2), token)
    assert exc.value.status_code == 400
    assert exc.value.error_code == "InvalidQueryParameterValue"


def test_edited_marker_is_400(service):
    service.open_handles(SHARE, "f.txt", count=5)
    root = service.share(SHARE).get_directory_client()
    pager = root.list_handles(recursive=True, results_per_page=2).by_page()
    next(pager)
    token = pager.continuation_token
    assert token
    # Flip one character of the payload (the part after the last '!').
    head, payload = token.rsplit("!", 1)
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    with pytest.raises(HttpResponseError) as exc:
        first_page(root.list_handles(recursive=True, results_per_page=2), f"{head}!{flipped}")
    assert exc.value.status_code == 400
    # The untouched marker still works.
    assert len(first_page(root.list_handles(recursive=True, results_per_page=2), token)) == 2


def test_marker_from_another_listing_is_400(service):
    service.open_handles(SHARE, "a/f.txt", count=4)
    service.open_handles(SHARE, "b/f.txt", count=4)
    share = service.share(SHARE)
    pager = share.get_directory_client("a").list_handles(recursive=True, results_per_page=2).by_page()
    next(pager)
    token = pager.continuation_token
    with pytest.raises(HttpResponseError) as exc:
        first_page(share.get_directory_client("b").list_handles(recursive=True, results_per_page=2), token)
    assert exc.value.status_code == 400


def test_marker_from_another_service_instance_is_400(start_service):
    first = start_service()
    first.open_handles(SHARE, "f.txt", count=4)
    pager = first.share(SHARE).get_directory_client().list_handles(recursive=True, results_per_page=2).by_page()
    next(pager)
    token = pager.continuation_token
    second = start_service()
    second.open_handles(SHARE, "f.txt", count=4)
    with pytest.raises(HttpResponseError) as exc:
        first_page(second.share(SHARE).get_directory_client().list_handles(recursive=True, results_per_page=2), token)
    assert exc.value.status_code == 400


# -- headers --------------------------------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_list_response_headers(service):
    service.open_handles(SHARE, "f.txt", count=3)
    root = service.share(SHARE).get_directory_client()
    rec = Recorder()
    list(root.list_handles(recursive=True, results_per_page=1, raw_response_hook=rec))
    assert len(rec.exchanges) == 3
    request_ids = set()
    for req, resp in rec.exchanges:
        assert resp.status_code == 200
        assert UUID_RE.match(resp.headers["x-ms-request-id"]), resp.headers
        request_ids.add(resp.headers["x-ms-request-id"])
        assert resp.headers["x-ms-client-request-id"] == req.headers["x-ms-client-request-id"]
        assert resp.headers["x-ms-version"] == req.headers["x-ms-version"] == SDK_VERSION
        assert resp.headers["content-type"].startswith("application/xml")
        assert resp.headers["date"].endswith(" GMT")
        assert resp.body().startswith(b"\xef\xbb\xbf<?xml")
    assert len(request_ids) == 3, "every response has its own request id"


def test_custom_client_request_id_is_echoed(service):
    service.open_handles(SHARE, "f.txt")
    f = service.share(SHARE).get_file_client("f.txt")
    rec = Recorder()
    list(f.list_handles(client_request_id="my-trace-0001", raw_response_hook=rec))
    req, resp = rec.last
    assert req.headers["x-ms-client-request-id"] == "my-trace-0001"
    assert resp.headers["x-ms-client-request-id"] == "my-trace-0001"

    f.close_all_handles(client_request_id="my-trace-0002", raw_response_hook=rec)
    assert rec.last[1].headers["x-ms-client-request-id"] == "my-trace-0002"


def test_close_response_headers(service):
    service.open_handles(SHARE, "f.txt", count=2)
    f = service.share(SHARE).get_file_client("f.txt")
    rec = Recorder()
    f.close_all_handles(raw_response_hook=rec)
    req, resp = rec.last
    assert resp.status_code == 200
    assert resp.headers["x-ms-number-of-handles-closed"] == "2"
    assert resp.headers["x-ms-number-of-handles-failed"] == "0"
    assert "x-ms-marker" not in resp.headers
    assert UUID_RE.match(resp.headers["x-ms-request-id"])
    assert resp.headers["x-ms-client-request-id"] == req.headers["x-ms-client-request-id"]
    assert resp.headers["x-ms-version"] == SDK_VERSION
    assert resp.body() == b""


def test_error_response_carries_reason_request_ids_and_body(service):
    f = service.share(SHARE).get_file_client("missing/thing.txt")
    rec = Recorder()
    with pytest.raises(ResourceNotFoundError) as exc:
        list(f.list_handles(client_request_id="err-trace", raw_response_hook=rec))
    req, resp = rec.last
    assert resp.status_code == 404
    assert resp.reason == "The specified parent path does not exist."
    assert exc.value.reason == resp.reason
    assert resp.headers["x-ms-error-code"] == "ParentNotFound"
    assert resp.headers["x-ms-client-request-id"] == "err-trace"
    assert resp.headers["x-ms-version"] == SDK_VERSION
    request_id = resp.headers["x-ms-request-id"]
    assert UUID_RE.match(request_id)
    body = resp.body().decode("utf-8-sig")
    assert "<Code>ParentNotFound</Code>" in body
    assert f"RequestId:{request_id}" in body
    assert re.search(r"Time:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", body), body
    # The SDK puts the code and the message into the exception text.
    assert "ParentNotFound" in str(exc.value)
    assert "The specified parent path does not exist." in str(exc.value)


def test_authentication_error_reason_phrase(service):
    share = service.share(SHARE, credential={"account_name": "devstoreaccount1", "account_key": "AAAA" * 22})
    rec = Recorder()
    with pytest.raises(HttpResponseError):
        list(share.get_directory_client().list_handles(raw_response_hook=rec))
    resp = rec.last[1]
    assert resp.status_code == 403
    assert resp.reason.startswith("Server failed to authenticate the request.")
    assert "x-ms-request-id" in resp.headers


@pytest.mark.parametrize(
    "version,has_access_rights,has_client_name",
    [
        ("2022-11-02", False, False),
        ("2023-01-03", True, False),
        ("2024-05-04", True, True),
        (SDK_VERSION, True, True),
    ],
)
def test_fields_follow_the_requested_version(service, version, has_access_rights, has_client_name):
    (hid,) = service.open_handles(SHARE, "f.txt", client_name="PC-1", access=["Read", "Write"])
    share = service.share(SHARE, api_version=version)
    rec = Recorder()
    (h,) = share.get_file_client("f.txt").list_handles(raw_response_hook=rec)
    req, resp = rec.last
    assert req.headers["x-ms-version"] == version
    assert resp.headers["x-ms-version"] == version
    assert h.id == hid
    assert h.access_rights == (["Read", "Write"] if has_access_rights else None)
    assert h.client_name == ("PC-1" if has_client_name else None)
    assert (b"<ClientName>" in resp.body()) == has_client_name


def test_old_version_close_has_no_failed_count(service):
    """Before 2019-07-07 the service sends no x-ms-number-of-handles-failed (as Azure did).

    close_handle is used here because the SDK's close_all_handles (12.27.1) crashes on the
    missing header (`total_failed += None`): an SDK bug that real Azure triggers as well when
    the SDK is pinned to api_version 2019-02-02.
    """
    (hid, _) = service.open_handles(SHARE, "f.txt", count=2)
    f = service.share(SHARE, api_version="2019-02-02").get_file_client("f.txt")
    rec = Recorder()
    result = f.close_handle(hid, raw_response_hook=rec)
    assert result["closed_handles_count"] == 1
    resp = rec.last[1]
    assert resp.headers["x-ms-number-of-handles-closed"] == "1"
    assert "x-ms-number-of-handles-failed" not in resp.headers
    assert resp.headers["x-ms-version"] == "2019-02-02"


def test_request_ids_are_unique_across_operations(service):
    service.open_handles(SHARE, "f.txt", count=2)
    f = service.share(SHARE).get_file_client("f.txt")
    rec = Recorder()
    list(f.list_handles(raw_response_hook=rec))
    f.close_handle(list(f.list_handles())[0], raw_response_hook=rec)
    f.close_all_handles(raw_response_hook=rec)
    seen = [resp.headers["x-ms-request-id"] for resp in rec.responses]
    assert len(seen) == 3 and len(set(seen)) == 3
    assert all(uuid.UUID(s) for s in seen)


def test_share_snapshot_is_refused_clearly(service):
    """This service serves the live share only; a snapshot listing is a clean 400, not a 404
    or a listing of the live share."""
    service.open_handles(SHARE, "f.txt")
    snap = service.share(SHARE, snapshot="2024-01-01T00:00:00.0000000Z")
    rec = Recorder()
    with pytest.raises(HttpResponseError) as exc:
        list(snap.get_directory_client().list_handles(raw_response_hook=rec))
    assert (exc.value.status_code, exc.value.error_code) == (400, "FeatureNotSupported")
    assert "sharesnapshot=2024-01-01T00" in rec.last[0].url
