"""List Handles through the SDK: the share root, directories (recursive or not) and files,
paged with small pages so every listing takes many requests."""

from __future__ import annotations

import math

import pytest

from sdk_harness import SHARE
from sdk_util import Recorder, assert_each_once, ids, pages_of


@pytest.fixture
def tree(service):
    """23 handles spread over a small tree; returns the ids by where they are open.

        /            3 handles on the root directory itself
        d.txt        3
        docs/        2 handles on the directory itself
        docs/a.txt   4
        docs/sub/b.txt 5
        other/c.txt  6
        empty/       a directory without handles
        docs/none.txt a file without handles
    """
    open_ = service.open_handles
    layout = {
        "": open_(SHARE, "", directory=True, count=3, client="10.0.0.1:445"),
        "d.txt": open_(SHARE, "d.txt", count=3, client="10.0.0.2:445"),
        "docs": open_(SHARE, "docs", directory=True, count=2, client="10.0.0.3:445"),
        "docs/a.txt": open_(SHARE, "docs/a.txt", count=4, client="10.0.0.4:445"),
        "docs/sub/b.txt": open_(SHARE, "docs/sub/b.txt", count=5, client="10.0.0.5:445"),
        "other/c.txt": open_(SHARE, "other/c.txt", count=6, client="10.0.0.6:445"),
    }
    assert service.admin("PUT", SHARE, "empty", "kind=directory").status == 201
    assert service.admin("PUT", SHARE, "docs/none.txt", "kind=file").status == 201
    return layout


def all_ids(layout, *paths):
    return [i for p in paths for i in layout[p]]


def test_share_root_recursive_pages_of_two_list_every_handle_once(service, tree):
    root = service.share(SHARE).get_directory_client()
    rec = Recorder()
    pages = pages_of(
        root.list_handles(recursive=True, results_per_page=2, raw_response_hook=rec).by_page()
    )
    expected = all_ids(tree, *tree)
    assert len(expected) == 23
    assert len(pages) == math.ceil(23 / 2) == len(rec.requests)
    assert all(len(p) == 2 for p in pages[:-1]) and len(pages[-1]) == 1
    assert_each_once([h.id for p in pages for h in p], expected)
    # The SDK sent what it should: maxresults on every page, a marker on all but the first.
    assert all("maxresults=2" in r.url for r in rec.requests)
    assert "marker=" not in rec.requests[0].url
    assert all("marker=" in r.url for r in rec.requests[1:])
    assert all(r.headers["x-ms-recursive"] == "true" for r in rec.requests)


def test_share_root_recursive_pages_of_three(service, tree):
    root = service.share(SHARE).get_directory_client()
    pages = pages_of(root.list_handles(recursive=True, results_per_page=3).by_page())
    assert [len(p) for p in pages] == [3] * 7 + [2]
    assert_each_once([h.id for p in pages for h in p], all_ids(tree, *tree))


def test_share_root_not_recursive_lists_only_the_root_directory_handles(service, tree):
    root = service.share(SHARE).get_directory_client()
    pages = pages_of(root.list_handles(results_per_page=2).by_page())
    assert [len(p) for p in pages] == [2, 1]
    handles = [h for p in pages for h in p]
    assert_each_once(ids(handles), tree[""])
    assert all(h.path is None for h in handles)


def test_share_root_without_page_size_is_one_page(service, tree):
    root = service.share(SHARE).get_directory_client()
    rec = Recorder()
    pages = pages_of(root.list_handles(recursive=True, raw_response_hook=rec).by_page())
    assert len(pages) == 1 and len(rec.requests) == 1
    assert "maxresults" not in rec.requests[0].url
    assert_each_once(ids(pages[0]), all_ids(tree, *tree))


def test_directory_not_recursive_lists_only_its_own_handles(service, tree):
    docs = service.share(SHARE).get_directory_client("docs")
    handles = list(docs.list_handles(results_per_page=1))
    assert_each_once(ids(handles), tree["docs"])
    assert {h.path for h in handles} == {"docs"}


def test_directory_recursive_lists_its_subtree_and_nothing_else(service, tree):
    docs = service.share(SHARE).get_directory_client("docs")
    pages = pages_of(docs.list_handles(recursive=True, results_per_page=3).by_page())
    expected = all_ids(tree, "docs", "docs/a.txt", "docs/sub/b.txt")
    assert len(expected) == 11
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    handles = [h for p in pages for h in p]
    assert_each_once(ids(handles), expected)
    assert {h.path for h in handles} == {"docs", "docs/a.txt", "docs/sub/b.txt"}


def test_nested_directory_recursive(service, tree):
    sub = service.share(SHARE).get_directory_client("docs/sub")
    assert_each_once(ids(sub.list_handles(recursive=True, results_per_page=2)), tree["docs/sub/b.txt"])
    assert list(sub.list_handles(recursive=False)) == []


def test_file_lists_its_handles_in_pages(service, tree):
    f = service.share(SHARE).get_file_client("other/c.txt")
    rec = Recorder()
    pages = pages_of(f.list_handles(results_per_page=2, raw_response_hook=rec).by_page())
    assert [len(p) for p in pages] == [2, 2, 2]
    handles = [h for p in pages for h in p]
    assert_each_once(ids(handles), tree["other/c.txt"])
    assert {h.path for h in handles} == {"other/c.txt"}
    # A file client never sends x-ms-recursive, and the service does not need it.
    assert all("x-ms-recursive" not in r.headers for r in rec.requests)


def test_places_without_handles_list_empty(service, tree):
    share = service.share(SHARE)
    assert list(share.get_directory_client("empty").list_handles(recursive=True)) == []
    assert list(share.get_directory_client("empty").list_handles(results_per_page=1)) == []
    assert list(share.get_file_client("docs/none.txt").list_handles()) == []


def test_many_handles_on_one_file_page_by_one(service):
    opened = service.open_handles(SHARE, "busy.bin", count=25, access=["Read", "Write"])
    f = service.share(SHARE).get_file_client("busy.bin")
    pages = pages_of(f.list_handles(results_per_page=1).by_page())
    assert len(pages) == 25 and all(len(p) == 1 for p in pages)
    assert_each_once([h.id for p in pages for h in p], opened)


def test_continuation_token_resumes_with_another_page_size(service, tree):
    root = service.share(SHARE).get_directory_client()
    first_pager = root.list_handles(recursive=True, results_per_page=4).by_page()
    first = list(next(first_pager))
    token = first_pager.continuation_token
    assert token, "a partial listing must hand back a continuation token"
    rest = [
        h
        for p in root.list_handles(recursive=True, results_per_page=7).by_page(continuation_token=token)
        for h in p
    ]
    assert len(first) == 4
    assert_each_once(ids(first) + ids(rest), all_ids(tree, *tree))


def test_listing_is_in_a_stable_order(service, tree):
    """Two listings of an unchanged share return the same handles in the same order."""
    root = service.share(SHARE).get_directory_client()
    a = ids(root.list_handles(recursive=True, results_per_page=5))
    b = ids(root.list_handles(recursive=True, results_per_page=2))
    assert a == b
