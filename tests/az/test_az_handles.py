"""`az storage share list-handle` and `close-handle`, typed as users type them, against the
handle service over real HTTP.

With `--path`, az first asks Get Directory Properties (`directory exists()`) and falls back
to a file client on a 404; without it, it addresses the share root. Paging is
`--max-results` (az keeps fetching pages until it has that many) and `--marker` (the
`nextMarker` of a previous answer).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from az_harness import KEY, SHARE, connection_string


def listed(az, svc, *args, cs=None):
    """The items of `az storage share list-handle --name SHARE ARGS`."""
    result = az("storage", "share", "list-handle", "--name", SHARE,
                "--connection-string", cs or connection_string(svc), *args)
    return result.json()["items"]


def paths(items):
    """How many handles are listed per path ('' for the share root)."""
    return Counter(item["path"] or "" for item in items)


def close(az, svc, *args, cs=None):
    return az("storage", "share", "close-handle", "--name", SHARE,
              "--connection-string", cs or connection_string(svc), *args)


def closed(result):
    body = result.json()
    return body["closed_handles_count"], body["failed_handles_count"]


# -- list-handle ------------------------------------------------------------------------------


def test_list_without_path_lists_the_share_roots_own_handles(az, svc):
    items = listed(az, svc)
    assert paths(items) == {"": 1}
    assert items[0]["clientName"] == "rootclient"
    assert items[0]["handleId"]


def test_list_without_path_recursive_lists_the_whole_share(az, svc):
    assert paths(listed(az, svc, "--recursive")) == {
        "": 1, "docs": 1, "docs/report.txt": 3, "docs/deep/notes.md": 1, "top.bin": 1,
    }


def test_list_with_a_directory_path(az, svc):
    assert paths(listed(az, svc, "--path", "docs")) == {"docs": 1}
    assert paths(listed(az, svc, "--path", "docs", "--recursive")) == {
        "docs": 1, "docs/report.txt": 3, "docs/deep/notes.md": 1,
    }
    assert listed(az, svc, "--path", "empty") == []


@pytest.mark.parametrize("path, count", [
    ("docs/report.txt", 3), ("top.bin", 1), ("docs/deep/notes.md", 1), ("DOCS/Report.TXT", 3),
])
def test_list_with_a_file_path(az, svc, path, count):
    items = listed(az, svc, "--path", path)
    assert len(items) == count
    assert {i["path"].lower() for i in items} == {path.lower()}


@pytest.mark.parametrize("path, code", [
    ("docs/missing.txt", "ResourceNotFound"), ("nodir/missing.txt", "ParentNotFound"),
])
def test_list_with_a_missing_path_fails_naming_it(az, svc, path, code):
    result = az("storage", "share", "list-handle", "--name", SHARE, "--path", path,
                "--connection-string", connection_string(svc))
    assert result.code != 0
    assert code in result.stderr


def test_paging_with_max_results_and_marker(az, svc):
    first = az("storage", "share", "list-handle", "--name", SHARE, "--recursive",
               "--max-results", "2", "--connection-string", connection_string(svc)).json()
    assert len(first["items"]) == 2 and first["nextMarker"]
    seen = [i["handleId"] for i in first["items"]]
    marker = first["nextMarker"]
    while marker:
        page = az("storage", "share", "list-handle", "--name", SHARE, "--recursive",
                  "--max-results", "2", "--marker", marker,
                  "--connection-string", connection_string(svc)).json()
        assert 1 <= len(page["items"]) <= 2
        seen += [i["handleId"] for i in page["items"]]
        marker = page["nextMarker"]
    all_ids = [i["handleId"] for i in listed(az, svc, "--recursive")]
    assert sorted(seen, key=int) == sorted(all_ids, key=int) and len(seen) == 7


def test_paging_a_file_path(az, svc):
    first = az("storage", "share", "list-handle", "--name", SHARE, "--path", "docs/report.txt",
               "--max-results", "2", "--connection-string", connection_string(svc)).json()
    assert len(first["items"]) == 2 and first["nextMarker"]
    rest = az("storage", "share", "list-handle", "--name", SHARE, "--path", "docs/report.txt",
              "--marker", first["nextMarker"], "--connection-string", connection_string(svc)).json()
    assert len(rest["items"]) == 1 and not rest["nextMarker"]


# -- close-handle -----------------------------------------------------------------------------


def test_close_by_id_with_a_file_path(az, svc):
    victim = listed(az, svc, "--path", "docs/report.txt")[0]["handleId"]
    assert closed(close(az, svc, "--handle-id", victim, "--path", "docs/report.txt")) == (1, 0)
    left = [i["handleId"] for i in listed(az, svc, "--path", "docs/report.txt")]
    assert victim not in left and len(left) == 2


def test_close_by_id_with_a_directory_path(az, svc):
    victim = listed(az, svc, "--path", "docs")[0]["handleId"]
    assert closed(close(az, svc, "--handle-id", victim, "--path", "docs")) == (1, 0)
    assert paths(listed(az, svc, "--path", "docs", "--recursive")) == {
        "docs/report.txt": 3, "docs/deep/notes.md": 1,
    }


def test_close_by_id_without_path_closes_a_share_root_handle(az, svc):
    victim = listed(az, svc)[0]["handleId"]
    assert closed(close(az, svc, "--handle-id", victim)) == (1, 0)
    assert listed(az, svc) == []


def test_close_by_id_without_path_leaves_a_handle_on_another_path_open(az, svc):
    """Without --path az sends the id to the share root. An id is closed through its own
    path only (the protocol doc's rule); elsewhere the service answers 200 with 0 closed, as
    it does for an unknown id, and the handle stays open."""
    victim = listed(az, svc, "--path", "top.bin")[0]["handleId"]
    assert closed(close(az, svc, "--handle-id", victim)) == (0, 0)
    assert [i["handleId"] for i in listed(az, svc, "--path", "top.bin")] == [victim]


def test_close_all_on_a_directory_recursively(az, svc):
    assert closed(close(az, svc, "--path", "docs", "--close-all", "--recursive")) == (5, 0)
    assert paths(listed(az, svc, "--recursive")) == {"": 1, "top.bin": 1}


def test_close_all_on_a_file(az, svc):
    assert closed(close(az, svc, "--path", "docs/report.txt", "--close-all")) == (3, 0)
    assert listed(az, svc, "--path", "docs/report.txt") == []


def test_close_all_without_path(az, svc):
    assert closed(close(az, svc, "--close-all")) == (1, 0)
    assert closed(close(az, svc, "--close-all", "--recursive")) == (6, 0)
    assert listed(az, svc, "--recursive") == []


def test_close_on_a_missing_path_fails_naming_it(az, svc):
    result = close(az, svc, "--path", "docs/missing.txt", "--close-all")
    assert result.code != 0 and "ResourceNotFound" in result.stderr


# -- credentials and shares -------------------------------------------------------------------


def in_a_day() -> str:
    return (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")


def share_sas(az, svc, permissions):
    """`az storage share generate-sas`, as a user makes one (offline: it only signs)."""
    result = az("storage", "share", "generate-sas", "--name", SHARE, "--permissions",
                permissions, "--expiry", in_a_day(), "--connection-string", connection_string(svc))
    return result.json()


def account_sas(az, svc, permissions):
    """`az storage account generate-sas` for the file service, containers and objects."""
    result = az("storage", "account", "generate-sas", "--services", "f", "--resource-types",
                "co", "--permissions", permissions, "--expiry", in_a_day(),
                "--connection-string", connection_string(svc))
    return result.json()


@pytest.mark.parametrize("make_sas", [share_sas, account_sas], ids=["share-sas", "account-sas"])
def test_sas_lists_and_closes_with_and_without_path(az, svc, make_sas):
    cs = connection_string(svc, sas=make_sas(az, svc, "rlw"))
    assert paths(listed(az, svc, cs=cs)) == {"": 1}
    assert len(listed(az, svc, "--path", "docs/report.txt", cs=cs)) == 3
    assert closed(close(az, svc, "--path", "docs", "--close-all", "--recursive", cs=cs)) == (5, 0)
    assert paths(listed(az, svc, "--recursive", cs=cs)) == {"": 1, "top.bin": 1}


def test_a_share_sas_without_read_cannot_probe_a_path(az, svc):
    """List Handles needs 'r' or 'l', but az's --path probe is Get Directory Properties,
    which needs 'r': with 'l' alone az lists the root and fails clearly on a path."""
    cs = connection_string(svc, sas=share_sas(az, svc, "l"))
    assert paths(listed(az, svc, cs=cs)) == {"": 1}
    result = az("storage", "share", "list-handle", "--name", SHARE, "--path", "docs",
                "--connection-string", cs)
    assert result.code != 0
    assert "You do not have the required permissions" in result.stderr


WRONG_KEY = "A" * 86 + "=="


@pytest.mark.parametrize("path", [None, "docs", "docs/report.txt"])
def test_a_wrong_key_fails_clearly(az, svc, path):
    args = ["storage", "share", "list-handle", "--name", SHARE,
            "--connection-string", connection_string(svc, key=WRONG_KEY)]
    if path:
        args += ["--path", path]
    result = az(*args)
    assert result.code != 0
    assert "Authentication failure" in result.stderr
    assert WRONG_KEY not in result.stderr and KEY not in result.stderr


def test_a_missing_share_fails_clearly(az, svc):
    for args in (["list-handle"], ["list-handle", "--path", "docs"],
                 ["close-handle", "--close-all"]):
        result = az("storage", "share", *args, "--name", "noshare",
                    "--connection-string", connection_string(svc))
        assert result.code != 0, args
        assert "ShareNotFound" in result.stderr, (args, result.stderr)
