"""The Azure SDK with its own OAuth credentials (azure-identity) against our service.

azure-identity gets storage tokens from a local Entra ID (local_entra.py) exactly as it would
from login.microsoftonline.com: `ClientAssertionCredential` with a federated service-account
token (what AKS workload identity does) and `ClientSecretCredential`. The service runs with
`--oauth-issuer` and `--no-shared-key`, over TLS (the SDK sends tokens only over https), and
the share client sets `token_intent="backup"` as the SDK requires for OAuth on files.
"""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientAssertionCredential, ClientSecretCredential

from local_entra import ASSERTION_AUDIENCE, LocalEntra, SigningKey, write_test_pki
from sdk_harness import CREDENTIAL, SHARE, HandleService

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONTRIBUTOR_OID = "22222222-0000-0000-0000-000000000002"
READER_OID = "11111111-0000-0000-0000-000000000001"
CLUSTER_ISSUER = "https://oidc.cluster.example/"
SUBJECT = "system:serviceaccount:share-hygiene:controller"
DIR = "dir"

SEED = [
    {
        "name": SHARE,
        "handles": [
            {"path": f"{DIR}/a.txt", "client": "10.0.0.9:445", "age": "1h", "count": 3},
        ],
    }
]


@pytest.fixture
def setup(tmp_path):
    ca, cert, key = write_test_pki(tmp_path)
    entra = LocalEntra(TENANT, cert, key)
    workdir = tmp_path / "service"
    workdir.mkdir()
    svc = HandleService(
        workdir,
        SEED,
        https=True,
        extra_args=[
            "--tls-cert", str(cert),
            "--tls-key", str(key),
            "--oauth-issuer", entra.issuer,
            "--oauth-tenant", TENANT,
            "--oauth-contributor", CONTRIBUTOR_OID,
            "--oauth-reader", READER_OID,
            "--no-shared-key",
        ],
    )
    try:
        yield entra, svc.start(), str(ca)
    finally:
        svc.stop()
        entra.stop()
        print(f"--- handle service on port {svc.port} ---\n{svc.stderr()}")


def workload_identity(entra: LocalEntra, ca: str, oid: str) -> ClientAssertionCredential:
    """What AKS workload identity sets up: a federated credential trusting the cluster's
    service-account issuer, and a credential that presents the projected token."""
    cluster = SigningKey("sa-key")
    entra.add_federated_app("wi-app", oid, CLUSTER_ISSUER, SUBJECT, cluster)

    def service_account_token() -> str:
        now = int(time.time())
        return cluster.sign(
            {"iss": CLUSTER_ISSUER, "sub": SUBJECT, "aud": ASSERTION_AUDIENCE,
             "iat": now, "exp": now + 600}
        )

    return ClientAssertionCredential(
        TENANT,
        "wi-app",
        service_account_token,
        authority=entra.authority,
        disable_instance_discovery=True,
        connection_verify=ca,
    )


def share_client(svc: HandleService, credential, ca: str):
    return svc.share(SHARE, credential=credential, token_intent="backup", connection_verify=ca)


def test_workload_identity_lists_and_closes_through_the_sdk(setup):
    entra, svc, ca = setup
    share = share_client(svc, workload_identity(entra, ca, CONTRIBUTOR_OID), ca)
    directory = share.get_directory_client(DIR)
    handles = list(directory.list_handles(recursive=True))
    assert len(handles) == 3
    result = directory.close_all_handles(recursive=True)
    assert result["closed_handles_count"] == 3
    assert list(directory.list_handles(recursive=True)) == []
    assert entra.tokens_issued >= 1


def test_a_reader_lists_but_close_is_authorization_permission_mismatch(setup):
    entra, svc, ca = setup
    entra.add_secret_app("reader-app", READER_OID, "reader-secret")
    credential = ClientSecretCredential(
        TENANT,
        "reader-app",
        "reader-secret",
        authority=entra.authority,
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    directory = share_client(svc, credential, ca).get_directory_client(DIR)
    assert len(list(directory.list_handles(recursive=True))) == 3
    with pytest.raises(HttpResponseError) as refused:
        directory.close_all_handles(recursive=True)
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"
    assert len(list(directory.list_handles(recursive=True))) == 3


def test_shared_key_is_refused_when_key_access_is_disabled(setup):
    _entra, svc, ca = setup
    directory = share_client(svc, CREDENTIAL, ca).get_directory_client(DIR)
    with pytest.raises(HttpResponseError) as refused:
        list(directory.list_handles(recursive=True))
    assert refused.value.status_code == 403
    assert refused.value.error_code == "KeyBasedAuthenticationNotPermitted"
