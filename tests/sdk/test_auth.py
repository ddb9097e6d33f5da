"""Credentials the SDK offers: Shared Key (dict and AzureNamedKeyCredential), service SAS for
a share or a file, account SAS; and the refusals: wrong key, SAS without the permission the
operation needs (List Handles needs r or l, Force Close Handles needs w), expired, tampered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.fileshare import (
    AccountSasPermissions,
    FileSasPermissions,
    ResourceTypes,
    Services,
    ShareSasPermissions,
    generate_account_sas,
    generate_file_sas,
    generate_share_sas,
)

from sdk_harness import ACCOUNT, KEY, SHARE
from sdk_util import Recorder, assert_each_once, ids

WRONG_KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
FILE = "dir/f.txt"


def in_an_hour():
    return datetime.now(timezone.utc) + timedelta(hours=1)


def share_sas(permission, key=KEY, **kwargs):
    kwargs.setdefault("expiry", in_an_hour())
    return generate_share_sas(ACCOUNT, SHARE, key, permission=permission, **kwargs)


def file_sas(path, permission, **kwargs):
    kwargs.setdefault("expiry", in_an_hour())
    return generate_file_sas(ACCOUNT, SHARE, path.split("/"), KEY, permission=permission, **kwargs)


def account_sas(permission, resource_types=None, services=None, **kwargs):
    return generate_account_sas(
        ACCOUNT,
        KEY,
        resource_types or ResourceTypes(container=True, object=True),
        permission,
        in_an_hour(),
        services=services or Services(fileshare=True),
        **kwargs,
    )


@pytest.fixture
def opened(service):
    """Three handles on dir/f.txt and one on the root directory."""
    return {
        "file": service.open_handles(SHARE, FILE, count=3),
        "root": service.open_handles(SHARE, "", directory=True),
    }


def assert_refused(exc_info, status, code):
    err = exc_info.value
    assert err.status_code == status, err
    assert err.error_code == code, err


# -- Shared Key ---------------------------------------------------------------------------


def test_shared_key_dict_credential(service, opened):
    rec = Recorder()
    listed = ids(service.share(SHARE).get_file_client(FILE).list_handles(raw_response_hook=rec))
    assert_each_once(listed, opened["file"])
    assert rec.last[0].headers["Authorization"].startswith(f"SharedKey {ACCOUNT}:")


def test_shared_key_named_key_credential_lists_and_closes(service, opened):
    share = service.share(SHARE, credential=AzureNamedKeyCredential(ACCOUNT, KEY))
    assert_each_once(ids(share.get_directory_client().list_handles(recursive=True)), opened["file"] + opened["root"])
    assert share.get_file_client(FILE).close_all_handles()["closed_handles_count"] == 3


@pytest.mark.parametrize("operation", ["list", "close_all", "close_one"])
def test_wrong_key_is_client_authentication_error(service, opened, operation):
    f = service.share(SHARE, credential={"account_name": ACCOUNT, "account_key": WRONG_KEY}).get_file_client(FILE)
    rec = Recorder()
    with pytest.raises(ClientAuthenticationError) as exc:
        if operation == "list":
            list(f.list_handles(raw_response_hook=rec))
        elif operation == "close_all":
            f.close_all_handles(raw_response_hook=rec)
        else:
            f.close_handle(opened["file"][0], raw_response_hook=rec)
    assert_refused(exc, 403, "AuthenticationFailed")
    assert rec.last[1].headers["x-ms-error-code"] == "AuthenticationFailed"
    # Nothing was closed.
    assert_each_once(ids(service.share(SHARE).get_file_client(FILE).list_handles()), opened["file"])


def test_wrong_account_name_is_refused(service, opened):
    f = service.share(SHARE, credential={"account_name": "otheraccount", "account_key": KEY}).get_file_client(FILE)
    with pytest.raises(ClientAuthenticationError) as exc:
        list(f.list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


def test_admin_endpoint_needs_the_key_too(service):
    resp = service.admin("POST", SHARE, "x.txt", "comp=open", {"client": "10.0.0.1:445"}, key=WRONG_KEY)
    assert resp.status == 403
    assert resp.headers["x-ms-error-code"] == "AuthenticationFailed"
    assert list(service.share(SHARE).get_directory_client().list_handles(recursive=True)) == []


# -- service SAS for the share ------------------------------------------------------------


@pytest.mark.parametrize("permission", ["r", "l", "rl", ShareSasPermissions(read=True, list=True, write=True)])
def test_share_sas_that_can_read_or_list_lists_handles(service, opened, permission):
    share = service.share(SHARE, credential=share_sas(permission))
    rec = Recorder()
    listed = ids(share.get_directory_client().list_handles(recursive=True, results_per_page=2, raw_response_hook=rec))
    assert_each_once(listed, opened["file"] + opened["root"])
    req = rec.requests[0]
    assert "sig=" in req.url and "sr=s" in req.url
    assert "Authorization" not in req.headers


@pytest.mark.parametrize("permission", ["w", "c", "d", "cwd"])
def test_share_sas_without_read_or_list_cannot_list(service, opened, permission):
    share = service.share(SHARE, credential=share_sas(permission))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_directory_client().list_handles(recursive=True))
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")


def test_share_sas_with_write_closes_handles(service, opened):
    share = service.share(SHARE, credential=share_sas("w"))
    f = share.get_file_client(FILE)
    assert f.close_handle(opened["file"][0])["closed_handles_count"] == 1
    assert share.get_directory_client().close_all_handles(recursive=True)["closed_handles_count"] == 3
    assert list(service.share(SHARE).get_directory_client().list_handles(recursive=True)) == []


@pytest.mark.parametrize("permission", ["r", "l", "rl", "rcdl"])
def test_share_sas_without_write_cannot_close(service, opened, permission):
    share = service.share(SHARE, credential=share_sas(permission))
    with pytest.raises(HttpResponseError) as exc:
        share.get_directory_client().close_all_handles(recursive=True)
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")
    with pytest.raises(HttpResponseError) as exc:
        share.get_file_client(FILE).close_handle(opened["file"][0])
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")
    assert len(list(service.share(SHARE).get_directory_client().list_handles(recursive=True))) == 4


def test_share_sas_as_azure_sas_credential(service, opened):
    share = service.share(SHARE, credential=AzureSasCredential(share_sas("rl")))
    assert_each_once(ids(share.get_file_client(FILE).list_handles()), opened["file"])


def test_share_sas_with_response_header_overrides_is_verified(service, opened):
    """The rscc/rscd/... fields are part of the string-to-sign; the service must include them."""
    sas = share_sas("rl", cache_control="no-cache", content_disposition="inline", content_type="text/plain")
    assert "rscc=" in sas and "rsct=" in sas
    share = service.share(SHARE, credential=sas)
    assert_each_once(ids(share.get_file_client(FILE).list_handles()), opened["file"])


def test_share_sas_for_another_share_is_refused(service, opened):
    other = generate_share_sas(ACCOUNT, "othershare", KEY, permission="rl", expiry=in_an_hour())
    share = service.share(SHARE, credential=other)
    with pytest.raises(ClientAuthenticationError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


def test_share_sas_signed_with_another_key_is_refused(service, opened):
    share = service.share(SHARE, credential=share_sas("rl", key=WRONG_KEY))
    with pytest.raises(ClientAuthenticationError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


def test_expired_sas_is_refused(service, opened):
    expired = share_sas("rlw", expiry=datetime.now(timezone.utc) - timedelta(hours=1))
    share = service.share(SHARE, credential=expired)
    with pytest.raises(ClientAuthenticationError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


def test_sas_that_starts_in_the_future_is_refused(service, opened):
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    share = service.share(SHARE, credential=share_sas("rl", start=later, expiry=later + timedelta(hours=1)))
    with pytest.raises(ClientAuthenticationError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


def test_tampered_sas_permissions_are_refused(service, opened):
    """Widening sp after signing breaks the signature."""
    sas = share_sas("r")
    tampered = sas.replace("sp=r", "sp=rw")
    assert tampered != sas
    share = service.share(SHARE, credential=tampered)
    with pytest.raises(ClientAuthenticationError) as exc:
        share.get_directory_client().close_all_handles(recursive=True)
    assert_refused(exc, 403, "AuthenticationFailed")
    assert len(list(service.share(SHARE).get_directory_client().list_handles(recursive=True))) == 4


def test_https_only_sas_over_http_is_refused(service, opened):
    share = service.share(SHARE, credential=share_sas("rl", protocol="https"))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthorizationProtocolMismatch")


def test_sas_ip_range(service, opened):
    ok = service.share(SHARE, credential=share_sas("rl", ip="127.0.0.0-127.0.0.255"))
    assert_each_once(ids(ok.get_file_client(FILE).list_handles()), opened["file"])
    elsewhere = service.share(SHARE, credential=share_sas("rl", ip="203.0.113.7"))
    with pytest.raises(HttpResponseError) as exc:
        list(elsewhere.get_file_client(FILE).list_handles())
    assert_refused(exc, 403, "AuthorizationSourceIPMismatch")


# -- service SAS for a file ---------------------------------------------------------------


def test_file_sas_lists_and_closes_that_file(service, opened):
    share = service.share(SHARE, credential=file_sas(FILE, FileSasPermissions(read=True)))
    assert_each_once(ids(share.get_file_client(FILE).list_handles(results_per_page=1)), opened["file"])

    share = service.share(SHARE, credential=file_sas(FILE, FileSasPermissions(write=True)))
    f = share.get_file_client(FILE)
    assert f.close_handle(opened["file"][0])["closed_handles_count"] == 1
    assert f.close_all_handles()["closed_handles_count"] == 2


def test_file_sas_on_a_non_ascii_path(service):
    path = "Ünï cödé/日本 語.txt"
    opened_ids = service.open_handles(SHARE, path, count=2)
    share = service.share(SHARE, credential=file_sas(path, "rw"))
    assert_each_once(ids(share.get_file_client(path).list_handles()), opened_ids)
    assert share.get_file_client(path).close_all_handles()["closed_handles_count"] == 2


def test_file_sas_without_write_cannot_close(service, opened):
    share = service.share(SHARE, credential=file_sas(FILE, FileSasPermissions(read=True, create=True, delete=True)))
    with pytest.raises(HttpResponseError) as exc:
        share.get_file_client(FILE).close_all_handles()
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")


def test_file_sas_without_read_cannot_list(service, opened):
    share = service.share(SHARE, credential=file_sas(FILE, FileSasPermissions(write=True)))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_file_client(FILE).list_handles())
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")


@pytest.mark.parametrize("elsewhere", ["dir/other.txt", "dir", ""], ids=["sibling", "parent", "share-root"])
def test_file_sas_does_not_reach_other_paths(service, opened, elsewhere):
    service.open_handles(SHARE, "dir/other.txt")
    share = service.share(SHARE, credential=file_sas(FILE, "rw"))
    target = share.get_file_client(elsewhere) if elsewhere.endswith(".txt") else share.get_directory_client(elsewhere)
    with pytest.raises(ClientAuthenticationError) as exc:
        list(target.list_handles())
    assert_refused(exc, 403, "AuthenticationFailed")


# -- account SAS --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "permission",
    [AccountSasPermissions(read=True), AccountSasPermissions(list=True), "rl"],
    ids=["read", "list", "rl"],
)
def test_account_sas_lists(service, opened, permission):
    share = service.share(SHARE, credential=account_sas(permission))
    assert_each_once(
        ids(share.get_directory_client().list_handles(recursive=True, results_per_page=1)),
        opened["file"] + opened["root"],
    )


def test_account_sas_with_write_closes(service, opened):
    share = service.share(SHARE, credential=account_sas(AccountSasPermissions(write=True)))
    assert share.get_directory_client().close_all_handles(recursive=True)["closed_handles_count"] == 4


def test_account_sas_without_write_cannot_close(service, opened):
    share = service.share(SHARE, credential=account_sas(AccountSasPermissions(read=True, list=True, delete=True)))
    with pytest.raises(HttpResponseError) as exc:
        share.get_directory_client().close_all_handles(recursive=True)
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")


def test_account_sas_without_read_or_list_cannot_list(service, opened):
    share = service.share(SHARE, credential=account_sas(AccountSasPermissions(write=True, create=True)))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthorizationPermissionMismatch")


def test_account_sas_for_the_service_level_only_is_refused(service, opened):
    share = service.share(SHARE, credential=account_sas("rlw", resource_types=ResourceTypes(service=True)))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthorizationResourceTypeMismatch")


def test_account_sas_for_blobs_is_refused(service, opened):
    share = service.share(SHARE, credential=account_sas("rlw", services=Services(blob=True, queue=True)))
    with pytest.raises(HttpResponseError) as exc:
        list(share.get_directory_client().list_handles())
    assert_refused(exc, 403, "AuthorizationServiceMismatch")


def test_backup_intent_header_with_shared_key_is_accepted(service, opened):
    share = service.share(SHARE, token_intent="backup")
    rec = Recorder()
    assert_each_once(ids(share.get_file_client(FILE).list_handles(raw_response_hook=rec)), opened["file"])
    assert rec.last[0].headers["x-ms-file-request-intent"] == "backup"
    assert share.get_file_client(FILE).close_all_handles()["closed_handles_count"] == 3
