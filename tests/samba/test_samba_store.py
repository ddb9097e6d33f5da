"""The Samba store end to end: real smbd, real SMB clients holding handles, our handle service
over HTTP, and the official Azure SDK listing and force-closing those handles.

A closed handle must fail its next READ/FLUSH (QUERY_DIRECTORY for directories) with
STATUS_FILE_CLOSED (0xC0000128); every other handle must keep working.
"""

from __future__ import annotations

import os
import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from samba_harness import STATUS_FILE_CLOSED, SambaHandleService, wait_status

CLOSED = "0x%08x" % STATUS_FILE_CLOSED
DISCONNECTED_NAME = "disconnected-durable-handle"


def list_handles(svc, share: str, path: str, recursive: bool = True, page: int | None = None):
    def go():
        d = svc.share_client(share).get_directory_client(path)
        kw = {"results_per_page": page} if page else {}
        return list(d.list_handles(recursive=recursive, **kw))

    return svc.call(go)


def by_path(handles) -> dict[str, list]:
    out: dict[str, list] = {}
    for h in handles:
        out.setdefault(h.path, []).append(h)
    return out


def test_lists_every_open_with_its_fields(samba_lab, samba_service, smb_client):
    c = smb_client()
    d = c.open_dir("fields")
    f1 = c.open_file("fields/a.txt")
    c.open_file("fields/sub dir   x.txt", write=True)
    c.open_file("fields/a.txt", write=False)  # a second open of the same file, same process
    before = time.time()

    handles = list_handles(samba_service, "data", "fields")
    paths = sorted(h.path for h in handles)
    assert paths == ["fields", "fields/a.txt", "fields/a.txt", "fields/sub dir   x.txt"]
    assert len({h.id for h in handles}) == 4, "ids are unique"
    assert [int(h.id) for h in handles] == sorted(int(h.id) for h in handles), "ascending ids"

    root = samba_lab.share_path("data")
    dir_ino = os.stat(root / "fields").st_ino
    file_ino = os.stat(root / "fields" / "a.txt").st_ino
    groups = by_path(handles)
    (dh,) = groups["fields"]
    assert (int(dh.file_id), int(dh.parent_id)) == (dir_ino, 0), "the parent of a top-level dir is the root (0)"
    for h in groups["fields/a.txt"]:
        assert (int(h.file_id), int(h.parent_id)) == (file_ino, dir_ino)
    rights = sorted(sorted(str(r.value) for r in h.access_rights) for h in groups["fields/a.txt"])
    assert rights == [["Read"], ["Read", "Write"]]
    assert [str(r.value) for r in dh.access_rights] == ["Read"]

    sessions = {h.session_id for h in handles}
    assert len(sessions) == 1 and "0" not in {str(s) for s in sessions}, "one connection, one session"
    local_port = c.conn.transport._sock.getsockname()[1]
    assert {h.client_ip for h in handles} == {f"127.0.0.1:{local_port}"}
    assert {h.client_name for h in handles} == {"127.0.0.1"}
    for h in handles:
        assert abs(h.open_time.timestamp() - before) < 60
    # Non-recursive on the directory: only the directory's own handle.
    assert [h.path for h in list_handles(samba_service, "data", "fields", recursive=False)] == ["fields"]
    assert d.probe() == "OK" and f1.probe() == "OK"


def test_pages_by_marker(samba_service, smb_client):
    c = smb_client()
    c.open_dir("paged")
    for i in range(6):
        c.open_file(f"paged/f{i}.txt")

    def pages():
        d = samba_service.share_client("data").get_directory_client("paged")
        return [list(p) for p in d.list_handles(recursive=True, results_per_page=3).by_page()]

    got = samba_service.call(pages)
    assert [len(p) for p in got] == [3, 3, 1]
    ids = [int(h.id) for p in got for h in p]
    assert ids == sorted(set(ids))


def test_close_one_handle_by_id(samba_service, smb_client):
    c = smb_client()
    d = c.open_dir("byid")
    files = [c.open_file(f"byid/f{i}.txt") for i in range(3)]
    victim = files[1]
    handles = by_path(list_handles(samba_service, "data", "byid"))
    (h,) = handles["byid/f1.txt"]

    def close():
        return samba_service.share_client("data").get_file_client("byid/f1.txt").close_handle(h)

    assert samba_service.call(close) == {"closed_handles_count": 1, "failed_handles_count": 0}
    assert wait_status([victim], CLOSED) == {"byid/f1.txt": CLOSED}
    assert wait_status([victim], CLOSED, op="flush") == {"byid/f1.txt": CLOSED}
    assert {x.path: x.probe() for x in [d, files[0], files[2]]} == {
        "byid": "OK",
        "byid/f0.txt": "OK",
        "byid/f2.txt": "OK",
    }
    assert "byid/f1.txt" not in by_path(list_handles(samba_service, "data", "byid"))
    # Closing it again: it is gone, nothing closed, nothing failed.
    assert samba_service.call(close) == {"closed_handles_count": 0, "failed_handles_count": 0}


def test_close_all_recursive_follows_markers(samba_service, smb_client):
    c = smb_client()
    keep_client = smb_client()
    top = c.open_dir("tree")
    doomed = [top] + [c.open_file(f"tree/f{i}.txt") for i in range(4)]
    c.open_dir("tree/sub")
    doomed.append(c.held[-1])
    doomed += [c.open_file(f"tree/sub/g{i}.txt") for i in range(2)]
    keep = [keep_client.open_dir("kept"), keep_client.open_file("kept/k.txt"), c.open_file("tree2.txt")]

    def close_all():
        return samba_service.share_client("data").get_directory_client("tree").close_all_handles(recursive=True)

    # 8 handles with --close-batch 3: the SDK follows x-ms-marker over three calls.
    assert samba_service.call(close_all) == {"closed_handles_count": 8, "failed_handles_count": 0}
    assert set(wait_status(doomed, CLOSED).values()) == {CLOSED}
    assert {h.path: h.probe() for h in keep} == {"kept": "OK", "kept/k.txt": "OK", "tree2.txt": "OK"}
    assert list_handles(samba_service, "data", "tree") == []


def test_close_all_on_a_file_closes_only_its_handles(samba_service, smb_client):
    c = smb_client()
    a1 = c.open_file("one.txt")
    a2 = c.open_file("one.txt", write=False)
    other = c.open_file("one.txt.bak")

    def close_all():
        return samba_service.share_client("data").get_file_client("one.txt").close_all_handles()

    assert samba_service.call(close_all) == {"closed_handles_count": 2, "failed_handles_count": 0}
    assert set(wait_status([a1, a2], CLOSED).values()) == {CLOSED}
    assert other.probe() == "OK"


def test_shares_come_from_smb_conf(samba_service, smb_client):
    c = smb_client("other")
    held = c.open_file("elsewhere.txt")
    assert [h.path for h in list_handles(samba_service, "other", "")] == ["elsewhere.txt"]
    assert "elsewhere.txt" not in by_path(list_handles(samba_service, "data", ""))
    assert held.probe() == "OK"


def test_missing_share_and_paths_are_404s(samba_service):
    def err(share, path, is_file=False):
        def go():
            s = samba_service.share_client(share)
            if is_file:
                return list(s.get_file_client(path).list_handles())
            return list(s.get_directory_client(path).list_handles(recursive=True))

        with pytest.raises(HttpResponseError) as e:
            samba_service.call(go)
        return e.value.status_code, e.value.error_code

    assert err("nosuchshare", "") == (404, "ShareNotFound")
    assert err("data", "no/such/dir") == (404, "ParentNotFound")
    assert err("data", "nosuchdir") == (404, "ResourceNotFound")
    assert err("data", "nosuch.txt", is_file=True) == (404, "ResourceNotFound")


def test_an_existing_path_without_handles_lists_empty(samba_lab, samba_service):
    (samba_lab.share_path("data") / "quiet").mkdir()
    assert list_handles(samba_service, "data", "quiet") == []


def test_disconnected_durable_handles_are_listed_and_refused(samba_service, smb_client):
    c = smb_client()
    c.open_file("durable-x.txt", durable=True)
    c.drop()
    handles = [h for h in list_handles(samba_service, "data", "") if h.path == "durable-x.txt"]
    assert len(handles) == 1
    (h,) = handles
    assert (str(h.session_id), h.client_ip, h.client_name) == ("0", "0.0.0.0:0", DISCONNECTED_NAME)
    assert int(h.id) >> 63 == 1, "the disconnected flag is the top bit of the id"

    def close_one():
        return samba_service.share_client("data").get_file_client("durable-x.txt").close_handle(h)

    def close_all():
        return samba_service.share_client("data").get_file_client("durable-x.txt").close_all_handles()

    assert samba_service.call(close_one) == {"closed_handles_count": 0, "failed_handles_count": 1}
    assert samba_service.call(close_all) == {"closed_handles_count": 0, "failed_handles_count": 1}
    assert "disconnected durable open" in samba_service.log()


def test_recursive_on_a_file_is_refused(samba_lab, samba_service):
    (samba_lab.share_path("data") / "plain.txt").write_text("x")

    def go():
        s = samba_service.share_client("data")
        return list(s.get_directory_client("plain.txt").list_handles(recursive=True))

    with pytest.raises(HttpResponseError) as e:
        samba_service.call(go)
    assert e.value.status_code == 400


def test_missing_share_raises_resource_not_found_type(samba_service):
    def go():
        return list(samba_service.share_client("nosuchshare").get_directory_client("").list_handles())

    with pytest.raises(ResourceNotFoundError):
        samba_service.call(go)


def test_close_calls_answer_within_their_time_budget(samba_lab, smb_client):
    # One close at a time and a zero budget: each call starts one close and answers with
    # x-ms-marker, whatever the machine's speed, and the SDK follows the markers.
    svc = SambaHandleService(
        samba_lab,
        close_batch=1000,
        port=10005,
        extra_args=("--samba-close-parallelism", "1", "--samba-close-budget-secs", "0"),
    ).start()
    try:
        c = smb_client()
        c.open_dir("budget")
        held = [c.open_file(f"budget/f{i:02d}.txt") for i in range(5)]

        def close_all():
            return svc.share_client("data").get_directory_client("budget").close_all_handles(recursive=True)

        assert svc.call(close_all) == {"closed_handles_count": 6, "failed_handles_count": 0}
        assert set(wait_status(held, CLOSED).values()) == {CLOSED}
        # Six handles (the directory and five files), one close per call: five calls ran out of
        # time and answered with a marker, the sixth finished.
        assert svc.log().count('"out_of_time":true') == 5, svc.log()
    finally:
        svc.stop()
