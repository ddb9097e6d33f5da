"""Force Close Handles through the SDK: `close_handle` on one handle and `close_all_handles`,
which loops over x-ms-marker when the service closes in batches."""

from __future__ import annotations

import pytest

from sdk_harness import SHARE
from sdk_util import Recorder, assert_each_once, client_for, ids

CLOSED_ONE = {"closed_handles_count": 1, "failed_handles_count": 0}
CLOSED_NONE = {"closed_handles_count": 0, "failed_handles_count": 0}


def remaining(service, path=None):
    share = service.share(SHARE)
    d = share.get_directory_client(path) if path else share.get_directory_client()
    return ids(d.list_handles(recursive=True))


def test_close_handle_closes_exactly_that_handle(service):
    opened = service.open_handles(SHARE, "dir/f.txt", count=5)
    f = service.share(SHARE).get_file_client("dir/f.txt")
    handles = list(f.list_handles())
    victim = handles[2]

    rec = Recorder()
    assert f.close_handle(victim, raw_response_hook=rec) == CLOSED_ONE
    req, resp = rec.last
    assert req.method == "PUT" and "comp=forceclosehandles" in req.url
    assert req.headers["x-ms-handle-id"] == victim.id
    assert resp.headers["x-ms-number-of-handles-closed"] == "1"
    assert resp.headers["x-ms-number-of-handles-failed"] == "0"
    assert "x-ms-marker" not in resp.headers

    assert_each_once(ids(f.list_handles()), [i for i in opened if i != victim.id])
    # Closing it again finds nothing to close: 200 with zero counts, not an error.
    assert f.close_handle(victim.id) == CLOSED_NONE


def test_close_handle_on_directories_and_the_share_root(service):
    root_ids = service.open_handles(SHARE, "", directory=True, count=2)
    dir_ids = service.open_handles(SHARE, "d", directory=True, count=2)
    share = service.share(SHARE)
    root = share.get_directory_client()
    d = share.get_directory_client("d")

    assert root.close_handle(root_ids[0]) == CLOSED_ONE
    assert d.close_handle(dir_ids[1]) == CLOSED_ONE
    assert_each_once(remaining(service), [root_ids[1], dir_ids[0]])


def test_close_each_listed_handle_through_its_own_path(service):
    """The sweep every tool does: list the share recursively, close each handle at its path."""
    opened = (
        service.open_handles(SHARE, "", directory=True)
        + service.open_handles(SHARE, "a b/ü.txt", count=2)
        + service.open_handles(SHARE, "a b", directory=True)
        + service.open_handles(SHARE, "c/d/e.txt")
    )
    share = service.share(SHARE)
    listed = list(share.get_directory_client().list_handles(recursive=True, results_per_page=2))
    assert_each_once(ids(listed), opened)
    for h in listed:
        assert client_for(share, h).close_handle(h) == CLOSED_ONE, h.path
    assert remaining(service) == []


def test_close_handle_with_an_unknown_id_closes_nothing(service):
    kept = service.open_handles(SHARE, "f.txt")
    f = service.share(SHARE).get_file_client("f.txt")
    assert f.close_handle("999999") == CLOSED_NONE
    assert f.close_handle("18446744073709551615") == CLOSED_NONE
    assert ids(f.list_handles()) == kept


def test_close_handle_through_an_unrelated_path_closes_nothing(service):
    """A handle id is closed through its own path; sent to another file it closes nothing
    (200, closed 0), so a wrong guess can never close someone else's handle."""
    (target,) = service.open_handles(SHARE, "a/target.txt")
    service.open_handles(SHARE, "b/other.txt")
    share = service.share(SHARE)
    assert share.get_file_client("b/other.txt").close_handle(target) == CLOSED_NONE
    assert target in remaining(service)


@pytest.mark.parametrize("timeout", [None, 30], ids=["no-timeout", "timeout-30"])
def test_close_all_recursive_over_several_batches(start_service, timeout):
    """With --close-batch 2 the service closes two handles per call; the SDK follows
    x-ms-marker until it is gone and sums the counts."""
    svc = start_service(close_batch=2)
    opened = (
        svc.open_handles(SHARE, "", directory=True, count=2)
        + svc.open_handles(SHARE, "top.txt", count=2)
        + svc.open_handles(SHARE, "x/y/z.txt", count=3)
        + svc.open_handles(SHARE, "x", directory=True, count=2)
    )
    assert len(opened) == 9
    root = svc.share(SHARE).get_directory_client()
    rec = Recorder()
    kwargs = {"timeout": timeout} if timeout else {}
    result = root.close_all_handles(recursive=True, raw_response_hook=rec, **kwargs)
    assert result == {"closed_handles_count": 9, "failed_handles_count": 0}

    # ceil(9 / 2) = 5 calls; each but the last answers with a marker the next call sends back.
    assert len(rec.exchanges) == 5
    closed = [int(resp.headers["x-ms-number-of-handles-closed"]) for resp in rec.responses]
    assert closed == [2, 2, 2, 2, 1]
    for (req, resp), (next_req, _) in zip(rec.exchanges, rec.exchanges[1:]):
        marker = resp.headers["x-ms-marker"]
        assert marker
        assert next_req.headers["x-ms-handle-id"] == "*"
        assert next_req.headers["x-ms-recursive"] == "true"
        assert f"marker={marker}" in next_req.url.replace("%21", "!")
    assert "marker=" not in rec.requests[0].url
    assert "x-ms-marker" not in rec.responses[-1].headers

    assert remaining(svc) == []


def test_close_all_not_recursive_on_a_directory_closes_only_its_own(start_service):
    svc = start_service(close_batch=2)
    own = svc.open_handles(SHARE, "d", directory=True, count=3)
    below = svc.open_handles(SHARE, "d/f.txt", count=2) + svc.open_handles(SHARE, "d/e", directory=True)
    elsewhere = svc.open_handles(SHARE, "other.txt")
    d = svc.share(SHARE).get_directory_client("d")
    assert d.close_all_handles() == {"closed_handles_count": 3, "failed_handles_count": 0}
    assert_each_once(remaining(svc), below + elsewhere)


def test_close_all_recursive_on_a_directory_leaves_siblings(start_service):
    svc = start_service(close_batch=2)
    inside = svc.open_handles(SHARE, "d/f.txt", count=3) + svc.open_handles(SHARE, "d/e/g.txt", count=2)
    sibling = svc.open_handles(SHARE, "d2/f.txt", count=2)  # shares the prefix "d"
    root = svc.open_handles(SHARE, "", directory=True)
    d = svc.share(SHARE).get_directory_client("d")
    assert d.close_all_handles(recursive=True) == {"closed_handles_count": len(inside), "failed_handles_count": 0}
    assert_each_once(remaining(svc), sibling + root)


def test_close_all_on_a_file_in_batches(start_service):
    svc = start_service(close_batch=2)
    svc.open_handles(SHARE, "dir/f.txt", count=5)
    neighbour = svc.open_handles(SHARE, "dir/g.txt", count=2)
    f = svc.share(SHARE).get_file_client("dir/f.txt")
    rec = Recorder()
    assert f.close_all_handles(raw_response_hook=rec) == {"closed_handles_count": 5, "failed_handles_count": 0}
    assert len(rec.exchanges) == 3
    assert all("x-ms-recursive" not in req.headers for req in rec.requests)
    assert list(f.list_handles()) == []
    assert_each_once(remaining(svc), neighbour)


def test_close_all_with_nothing_open(service):
    rec = Recorder()
    root = service.share(SHARE).get_directory_client()
    assert root.close_all_handles(recursive=True, raw_response_hook=rec) == CLOSED_NONE
    assert len(rec.exchanges) == 1


def test_handles_that_refuse_to_close_are_counted_as_failed(start_service):
    svc = start_service(close_batch=2)
    closable = svc.open_handles(SHARE, "d/ok.txt", count=3)
    stuck = svc.open_handles(SHARE, "d/stuck.txt", count=2, failClose=True)
    share = svc.share(SHARE)

    (one_stuck, *_) = share.get_file_client("d/stuck.txt").list_handles()
    assert share.get_file_client("d/stuck.txt").close_handle(one_stuck) == {
        "closed_handles_count": 0,
        "failed_handles_count": 1,
    }

    d = share.get_directory_client("d")
    assert d.close_all_handles(recursive=True) == {"closed_handles_count": 3, "failed_handles_count": 2}
    assert_each_once(remaining(svc), stuck)
    assert not set(closable) & set(remaining(svc))


@pytest.mark.parametrize("count,calls", [(1, 1), (2, 1), (4, 2), (6, 3), (7, 4)])
def test_close_all_makes_no_empty_trailing_call(start_service, count, calls):
    """When the last batch closes the last handle the service sends no x-ms-marker, so the SDK
    stops without a final empty call."""
    svc = start_service(close_batch=2)
    svc.open_handles(SHARE, "f.txt", count=count)
    rec = Recorder()
    f = svc.share(SHARE).get_file_client("f.txt")
    assert f.close_all_handles(raw_response_hook=rec)["closed_handles_count"] == count
    assert len(rec.exchanges) == calls
    assert all(int(r.headers["x-ms-number-of-handles-closed"]) > 0 for r in rec.responses)
