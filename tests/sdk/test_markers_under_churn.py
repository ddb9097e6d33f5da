"""Markers stay valid while handles open and close: a listing paged with small pages, with
handles opened and closed between pages (through the admin endpoint, as SMB clients would,
and through the SDK's close_handle), lists every handle that stayed open exactly once."""

from __future__ import annotations

import random
import threading

from sdk_harness import SHARE
from sdk_util import Recorder, assert_each_once

PATHS = ["a/one.txt", "b/two.txt", "three.txt", "a", ""]
CLOSED_ONE = {"closed_handles_count": 1, "failed_handles_count": 0}


def open_initial(service, rounds):
    """Handles interleaved over files, directories and the share root; {id: path}."""
    opened = {}
    for r in range(rounds):
        for p in PATHS:
            is_dir = p in ("a", "")
            (i,) = service.open_handles(SHARE, p, client=f"10.0.{r}.{len(opened) % 250}:445", directory=is_dir)
            opened[i] = p
    return opened


def close_via_sdk(share, hid, path):
    client = share.get_file_client(path) if path.endswith(".txt") else share.get_directory_client(path or None)
    assert client.close_handle(hid) == CLOSED_ONE, (hid, path)


def test_paging_while_handles_open_and_close_between_pages(service):
    initial = open_initial(service, rounds=6)  # 30 handles
    paths = dict(initial)
    share = service.share(SHARE)
    root = share.get_directory_client()

    seen: list[str] = []
    closed: set[str] = set()
    closed_ahead: set[str] = set()  # closed before the listing reached them
    opened_during: list[str] = []
    pages = 0
    for page in root.list_handles(recursive=True, results_per_page=3).by_page():
        page_ids = [h.id for h in page]
        pages += 1
        assert not set(page_ids) & closed_ahead, "a handle closed before it was reached was listed"
        seen += page_ids
        if not page_ids:
            continue
        use_sdk = pages % 2 == 0

        # 1. Close the page's last handle: the one the continuation marker resumes after.
        anchor = page_ids[-1]
        if anchor not in closed:
            if use_sdk:
                close_via_sdk(share, anchor, paths[anchor])
            else:
                assert service.release(SHARE, [anchor]) == 1
            closed.add(anchor)

        # 2. Close the next handle the listing would reach (the lowest unseen initial id).
        ahead = sorted((i for i in initial if i not in seen and i not in closed), key=int)
        if ahead:
            nxt = ahead[0]
            if use_sdk:
                assert service.release(SHARE, [nxt]) == 1
            else:
                close_via_sdk(share, nxt, paths[nxt])
            closed.add(nxt)
            closed_ahead.add(nxt)

        # 3. Open new handles, on a path already listed and on a new one.
        for p in ("a/one.txt", f"new/n{pages}.txt"):
            (i,) = service.open_handles(SHARE, p, client="10.9.9.9:445")
            paths[i] = p
            opened_during.append(i)

    assert pages >= 6, f"the listing took only {pages} pages"
    assert closed_ahead, "the test never closed a handle ahead of the listing"
    stayed_open = [i for i in initial if i not in closed]
    # Nothing twice; every handle open throughout exactly once; nothing closed-ahead at all.
    assert len(seen) == len(set(seen)), f"duplicates: {sorted(seen, key=int)}"
    assert set(stayed_open) <= set(seen), f"skipped: {sorted(set(stayed_open) - set(seen), key=int)}"
    assert not set(seen) & closed_ahead
    assert set(seen) <= set(initial) | set(opened_during)

    # A fresh listing agrees with what is open now.
    now_open = [i for i in list(initial) + opened_during if i not in closed]
    assert_each_once([h.id for h in root.list_handles(recursive=True, results_per_page=4)], now_open)


def test_paging_while_another_client_churns_concurrently(service):
    """A thread opens and closes handles as fast as it can while the SDK pages through the
    share two handles at a time; the handles that stay open are each listed exactly once."""
    stable = []
    churn: list[tuple[str, str]] = []
    for r in range(20):
        stable += service.open_handles(SHARE, f"stable/s{r % 4}.txt", client="10.1.0.1:445")
        for p in ("churn/c.txt", "stable/s1.txt"):
            (i,) = service.open_handles(SHARE, p, client="10.2.0.1:445")
            churn.append((i, p))

    stop = threading.Event()
    errors: list[BaseException] = []
    ops = {"opened": 0, "closed": 0}
    share_for_thread = service.share(SHARE)

    def churner():
        rng = random.Random(1234)
        try:
            while not stop.is_set():
                p = rng.choice(["churn/c.txt", "stable/s1.txt", "churn/new.txt", ""])
                (i,) = service.open_handles(SHARE, p, client="10.2.0.1:445", directory=(p == ""))
                churn.append((i, p))
                ops["opened"] += 1
                if len(churn) > 3:
                    i, p = churn.pop(rng.randrange(len(churn)))
                    if rng.random() < 0.5:
                        service.release(SHARE, [i])
                    else:
                        close_via_sdk(share_for_thread, i, p)
                    ops["closed"] += 1
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    thread = threading.Thread(target=churner, daemon=True)
    thread.start()
    try:
        root = service.share(SHARE).get_directory_client()
        seen = []
        pages = 0
        for page in root.list_handles(recursive=True, results_per_page=2).by_page():
            seen += [h.id for h in page]
            pages += 1
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert ops["opened"] > 0 and ops["closed"] > 0, ops
    assert pages > 20
    assert len(seen) == len(set(seen)), "a handle was listed twice"
    assert set(stable) <= set(seen), f"skipped: {sorted(set(stable) - set(seen), key=int)}"


def test_close_all_while_handles_open_and_close_between_batches(start_service):
    """close_all_handles follows x-ms-marker while, between its calls, a client closes a handle
    the sweep has not reached yet and opens a new one. Every handle is closed once: the counts
    add up, and what is left is only what opened after the sweep passed."""
    svc = start_service(close_batch=3)
    initial = open_initial(svc, rounds=3)  # 15 handles
    share = svc.share(SHARE)
    released: list[str] = []
    opened_during: list[str] = []

    def between_batches(pipeline_response):
        # Runs after each Force Close Handles response, before the SDK sends the next call.
        if not pipeline_response.http_response.headers.get("x-ms-marker"):
            return
        open_now = {h.id for h in share.get_directory_client().list_handles(recursive=True)}
        ahead = sorted((i for i in initial if i in open_now), key=int)
        if ahead:
            assert svc.release(SHARE, [ahead[-1]]) == 1
            released.append(ahead[-1])
        opened_during.extend(svc.open_handles(SHARE, "late/x.txt", client="10.3.0.1:445"))

    rec = Recorder()

    def hook(resp):
        rec(resp)
        between_batches(resp)

    result = share.get_directory_client().close_all_handles(recursive=True, raw_response_hook=hook)
    assert len(rec.exchanges) >= 3
    assert result["failed_handles_count"] == 0
    left = [h.id for h in share.get_directory_client().list_handles(recursive=True)]
    # Every initial handle is gone: closed by the sweep or released by its client.
    assert not set(left) & set(initial)
    assert set(left) <= set(opened_during)
    # The counts add up: the sweep closed exactly what is neither released nor left open.
    total = len(initial) + len(opened_during)
    assert result["closed_handles_count"] == total - len(released) - len(left)
    per_call = sum(int(r.headers["x-ms-number-of-handles-closed"]) for r in rec.responses)
    assert per_call == result["closed_handles_count"]
