"""Every field of a handle as the SDK parses it, from a seed file and from the admin endpoint,
including paths with spaces, non-ASCII characters and the XML-invalid U+FFFE / U+FFFF."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sdk_harness import SHARE
from sdk_util import Recorder

DIR = "Projekt Ünïcode"
FILE = f"{DIR}/Grüße 日本語 (final) R&D.txt"
TOP = "top level.txt"

FIELD_SEED = [
    {
        "name": SHARE,
        "directories": [DIR],
        "handles": [
            {  # id 1: the share root directory
                "path": "",
                "client": "10.1.2.3:50123",
                "clientName": "ROOT-PC",
                "session": 7,
                "openTime": "2024-05-01T10:00:00Z",
                "access": ["Read"],
            },
            {  # id 2: a directory, reconnected after it was opened
                "path": DIR,
                "directory": True,
                "client": "10.1.2.4:445",
                "clientName": "WS-42",
                "openTime": "2023-12-31T23:59:59Z",
                "lastReconnectTime": "2024-01-02T03:04:05Z",
                "access": ["Read", "Write", "Delete"],
            },
            {  # id 3: a file below it, from an IPv6 client, largest session id
                "path": FILE,
                "client": "[2001:db8::1]:445",
                "clientName": "Laptop-Ü",
                "session": 18446744073709551615,
                "openTime": "2020-02-29T12:34:56Z",
                "access": ["Write"],
            },
            {  # id 4: a file in the root, no client name, opened 90 minutes before start
                "path": TOP,
                "client": "192.168.7.9:60000",
                "age": "90m",
                "access": ["Read", "Delete"],
            },
        ],
    }
]


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def seeded(start_service):
    started = datetime.now(timezone.utc)
    svc = start_service(FIELD_SEED)
    return svc, started


def by_path(handles):
    return {h.path: h for h in handles}


def test_every_field_of_seeded_handles(seeded):
    svc, started = seeded
    root = svc.share(SHARE).get_directory_client()
    handles = list(root.list_handles(recursive=True, results_per_page=3))
    assert len(handles) == 4
    h = by_path(handles)
    assert set(h) == {None, DIR, FILE, TOP}

    # Ids, file ids, parent ids and session ids are decimal strings.
    for x in handles:
        for value in (x.id, x.file_id, x.parent_id, x.session_id):
            assert isinstance(value, str) and value.isdigit(), (x.path, value)
    assert len({x.id for x in handles}) == 4

    root_h, dir_h, file_h, top_h = h[None], h[DIR], h[FILE], h[TOP]

    # The share root: no path (the SDK maps <Path /> to None), file id 0, parent 0.
    assert dict(root_h) == {
        "id": root_h.id,
        "path": None,
        "file_id": "0",
        "parent_id": "0",
        "session_id": "7",
        "client_ip": "10.1.2.3:50123",
        "client_name": "ROOT-PC",
        "open_time": utc(2024, 5, 1, 10, 0, 0),
        "last_reconnect_time": None,
        "access_rights": ["Read"],
    }

    # A directory in the root: parent 0, its own non-zero file id, reconnect time parsed.
    assert dir_h.file_id != "0"
    assert dict(dir_h) == {
        "id": dir_h.id,
        "path": DIR,
        "file_id": dir_h.file_id,
        "parent_id": "0",
        "session_id": dir_h.session_id,
        "client_ip": "10.1.2.4:445",
        "client_name": "WS-42",
        "open_time": utc(2023, 12, 31, 23, 59, 59),
        "last_reconnect_time": utc(2024, 1, 2, 3, 4, 5),
        "access_rights": ["Read", "Write", "Delete"],
    }

    # A file below it: its parent id is the directory's file id; path with spaces, umlauts,
    # CJK, parentheses and an ampersand comes back exactly.
    assert file_h.file_id not in ("0", dir_h.file_id)
    assert dict(file_h) == {
        "id": file_h.id,
        "path": FILE,
        "file_id": file_h.file_id,
        "parent_id": dir_h.file_id,
        "session_id": "18446744073709551615",
        "client_ip": "[2001:db8::1]:445",
        "client_name": "Laptop-Ü",
        "open_time": utc(2020, 2, 29, 12, 34, 56),
        "last_reconnect_time": None,
        "access_rights": ["Write"],
    }

    # A file in the root: parent 0, no client name; opened "90m" before the service started.
    assert top_h.file_id not in ("0", dir_h.file_id, file_h.file_id)
    assert top_h.parent_id == "0"
    assert top_h.client_name is None
    assert top_h.client_ip == "192.168.7.9:60000"
    assert top_h.last_reconnect_time is None
    assert top_h.access_rights == ["Read", "Delete"]
    expected_open = started - timedelta(minutes=90)
    assert abs(top_h.open_time - expected_open) < timedelta(seconds=30), top_h.open_time
    assert top_h.open_time.tzinfo is not None


def test_same_handle_reads_the_same_through_every_url(seeded):
    """A handle listed from the share root, its directory and its own file is one handle."""
    svc, _ = seeded
    share = svc.share(SHARE)
    from_root = by_path(share.get_directory_client().list_handles(recursive=True))[FILE]
    from_dir = by_path(share.get_directory_client(DIR).list_handles(recursive=True))[FILE]
    (from_file,) = share.get_file_client(FILE).list_handles()
    assert dict(from_root) == dict(from_dir) == dict(from_file)


def test_session_ids_follow_the_client(service):
    """Handles one client opens share a session id; another client gets another one; an
    explicit session id is reported as given."""
    a1 = service.open_handles(SHARE, "s/a.txt", client="10.9.0.1:445", client_name="A", count=2)
    a2 = service.open_handles(SHARE, "s/b.txt", client="10.9.0.1:445", client_name="A")
    b = service.open_handles(SHARE, "s/a.txt", client="10.9.0.2:445", client_name="B")
    fixed = service.open_handles(SHARE, "s/c.txt", client="10.9.0.3:445", session=123456789)
    handles = {h.id: h for h in service.share(SHARE).get_directory_client("s").list_handles(recursive=True)}
    sessions_a = {handles[i].session_id for i in a1 + a2}
    assert len(sessions_a) == 1
    assert handles[b[0]].session_id not in sessions_a
    assert handles[fixed[0]].session_id == "123456789"


def test_handles_on_one_file_share_its_ids(service):
    one = service.open_handles(SHARE, "x/same.txt", client="10.0.0.1:1")
    two = service.open_handles(SHARE, "x/same.txt", client="10.0.0.2:2")
    other = service.open_handles(SHARE, "x/other.txt")
    dir_h = service.open_handles(SHARE, "x", directory=True)
    h = {x.id: x for x in service.share(SHARE).get_directory_client("x").list_handles(recursive=True)}
    assert h[one[0]].file_id == h[two[0]].file_id
    assert h[one[0]].file_id != h[other[0]].file_id
    assert {h[i].parent_id for i in one + two + other} == {h[dir_h[0]].file_id}
    assert h[dir_h[0]].parent_id == "0"


def test_admin_open_time_and_reconnect_time(service):
    (hid,) = service.open_handles(
        SHARE,
        "t.txt",
        openTime="2001-09-09T01:46:40Z",
        lastReconnectTime="2033-05-18T03:33:20Z",
        access=[],
    )
    (h,) = service.share(SHARE).get_file_client("t.txt").list_handles()
    assert h.id == hid
    assert h.open_time == utc(2001, 9, 9, 1, 46, 40)
    assert h.last_reconnect_time == utc(2033, 5, 18, 3, 33, 20)
    assert h.access_rights == []


ODD_PATHS = [
    pytest.param("odd\ufffename.txt", id="U+FFFE in a file name"),
    pytest.param("dir \ufffe ü/x\uffffy 日本.txt", id="U+FFFE dir and U+FFFF file, with spaces and non-ASCII"),
]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_path_with_xml_invalid_characters_is_sent_encoded(service, path):
    (odd,) = service.open_handles(SHARE, path, client="10.0.0.7:445")
    (plain,) = service.open_handles(SHARE, "plain name.txt", client="10.0.0.8:445")
    root = service.share(SHARE).get_directory_client()
    rec = Recorder()
    handles = {h.id: h for h in root.list_handles(recursive=True, raw_response_hook=rec)}

    # The SDK percent-decodes the Encoded="true" path back to the exact name.
    assert handles[odd].path == path
    assert handles[plain].path == "plain name.txt"

    # On the wire the odd path is percent-encoded and marked; the plain one is neither.
    body = rec.last[1].body()
    assert body.startswith(b"\xef\xbb\xbf<?xml")
    assert "\ufffe".encode() not in body and "\uffff".encode() not in body
    assert body.count(b'<Path Encoded="true">') == 1
    assert b"<Path>plain name.txt</Path>" in body

    # The file's own URL (the SDK percent-encodes U+FFFE in the request path) reaches it too,
    # and closing through it closes it.
    f = service.share(SHARE).get_file_client(path)
    (same,) = f.list_handles()
    assert dict(same) == dict(handles[odd])
    assert f.close_all_handles() == {"closed_handles_count": 1, "failed_handles_count": 0}
    assert [h.id for h in root.list_handles(recursive=True)] == [plain]


@pytest.mark.parametrize(
    "path",
    ["100% done.txt", "R&D/it's (v2) [draft].txt", "a#b/c+d=e;f.txt", "Ünïcödé/日本語/файл.txt", "trailing./x y"],
)
def test_paths_with_url_and_xml_special_characters(service, path):
    (hid,) = service.open_handles(SHARE, path)
    share = service.share(SHARE)
    (h,) = share.get_file_client(path).list_handles()
    assert (h.id, h.path) == (hid, path)
    (again,) = share.get_directory_client().list_handles(recursive=True)
    assert again.path == path


def test_trailing_dot_path_with_allow_trailing_dot(service):
    (hid,) = service.open_handles(SHARE, "dots/name.")
    share = service.share(SHARE, allow_trailing_dot=True)
    rec = Recorder()
    (h,) = share.get_file_client("dots/name.").list_handles(raw_response_hook=rec)
    assert (h.id, h.path) == (hid, "dots/name.")
    assert rec.last[0].headers["x-ms-allow-trailing-dot"] == "true"
