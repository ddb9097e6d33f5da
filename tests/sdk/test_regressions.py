"""Regressions found by running the SDK against the handle service, now fixed:

- a client name with a character XML 1.0 cannot carry made List Handles unreadable;
- paths were matched case-sensitively, where Azure Files names are case-insensitive.
"""

from __future__ import annotations

import pytest

from sdk_harness import SHARE


@pytest.mark.parametrize(
    "client_name",
    [
        pytest.param("bad\x01name", id="control-char-U+0001"),
        pytest.param("nul\x00name", id="NUL"),
        pytest.param("odd\ufffename", id="U+FFFE"),
        pytest.param("cr\rname", id="carriage-return"),
    ],
)
def test_client_name_the_service_accepts_lists_intact(service, client_name):
    """Was a bug: a client name with a character XML 1.0 cannot carry breaks List Handles.

    The admin endpoint (and the seed file) accept any `clientName`; List Handles then writes it
    raw into <ClientName>, so the body is not well-formed XML (U+0000, U+0001, U+FFFE) and the
    SDK fails the WHOLE listing of the share with DecodeError ("XML is invalid"): one odd handle
    hides every other handle from the sweep. A raw CR is well-formed but XML parsers turn it
    into LF, so the name silently changes.

    Fix: refuse such names when opening (admin 400 / seed error), or write CR as `&#13;`;
    either way, whatever the service accepts must list back exactly.
    """
    (other,) = service.open_handles(SHARE, "plain.txt", client_name="NORMAL-PC")
    resp = service.admin("POST", SHARE, "odd.txt", "comp=open", {"client": "10.0.0.1:445", "clientName": client_name})
    if resp.status == 400:
        return  # refusing the name is a correct fix
    assert resp.status == 201, resp
    root = service.share(SHARE).get_directory_client()
    handles = {h.id: h for h in root.list_handles(recursive=True)}
    assert other in handles
    (odd_id,) = [str(i) for i in resp.json()["handleIds"]]
    assert handles[odd_id].client_name == client_name


@pytest.mark.parametrize(
    "opened_as,asked_as",
    [
        pytest.param("Reports/Q1.xlsx", "reports/q1.XLSX", id="ascii"),
        pytest.param("Übersicht/Größe.txt", "übersicht/GRÖßE.txt", id="non-ascii"),
    ],
)
def test_paths_are_case_insensitive(service, opened_as, asked_as):
    """Was a bug: paths were matched case-sensitively; Azure Files names are case-insensitive.

    Azure documents directory and file names as "case-preserving and case-insensitive"
    (REST API reference, "Naming and referencing shares, directories, files, and metadata").
    The service looks paths up byte for byte, so List Handles / Force Close Handles on
    `reports/q1.XLSX` answer 404 ParentNotFound for a handle open on `Reports/Q1.xlsx`, and the
    admin endpoint creates `REPORTS/q1.xlsx` as a second file next to `Reports/Q1.xlsx`.

    Fix: resolve path segments case-insensitively (keep the stored case for <Path>), and make
    create/open find the existing node whatever the case.
    """
    (hid,) = service.open_handles(SHARE, opened_as)
    f = service.share(SHARE).get_file_client(asked_as)
    (h,) = f.list_handles()
    assert (h.id, h.path) == (hid, opened_as)  # the stored case is preserved

    # Opening the same file under another case is the same file (same file id).
    (again,) = service.open_handles(SHARE, asked_as)
    handles = {x.id: x for x in service.share(SHARE).get_directory_client().list_handles(recursive=True)}
    assert handles[again].file_id == handles[hid].file_id
    assert handles[again].path == opened_as
