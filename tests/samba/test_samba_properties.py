"""The Samba store knows its directories and files: Get File / Directory Properties from the
share's directory on disk (never beyond it), so the SDKs' `exists()` and `az storage share
list-handle|close-handle --path` work on a real smbd's shares."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "az"))

from az_harness import Az  # noqa: E402


@pytest.fixture(scope="module")
def az(tmp_path_factory) -> Az:
    return Az(tmp_path_factory.mktemp("azure-config"))


def test_sdk_exists_and_properties(samba_lab, samba_service, tmp_path):
    root = samba_lab.share_path("data")
    (root / "props" / "sub").mkdir(parents=True)
    (root / "props" / "f.txt").write_text("hello")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside, root / "props" / "escape")

    def go():
        share = samba_service.share_client("data")
        d, f = share.get_directory_client, share.get_file_client
        props = f("props/f.txt").get_file_properties()
        dprops = d("props").get_directory_properties()
        return {
            "dirs": [d(p).exists() for p in ["", "props", "props/sub", "props/f.txt", "nope"]],
            "files": [f(p).exists() for p in ["props/f.txt", "props", "props/nope.txt"]],
            "escape": [d("props/escape").exists(), f("props/escape/secret").exists()],
            "size": props.size,
            "ids": (props.file_id, props.parent_id, dprops.file_id, dprops.parent_id),
        }

    got = samba_service.call(go)
    assert got["dirs"] == [True, True, True, False, False]
    assert got["files"] == [True, False, False]
    assert got["escape"] == [False, False], "nothing outside the share is described"
    assert got["size"] == 5
    ino = lambda p: str((root / p).stat().st_ino)  # noqa: E731
    assert got["ids"] == (ino("props/f.txt"), ino("props"), ino("props"), "0")


def test_az_lists_and_closes_by_path(az, samba_lab, samba_service, smb_client):
    azdir = samba_lab.share_path("data") / "azdir"
    azdir.mkdir()
    azdir.chmod(0o777)  # made by root here; the SMB user creates the file in it
    held = smb_client().open_file("azdir/held.txt")
    base = ["--name", "data", "--connection-string", samba_service.connection_string()]
    prefix = tuple(samba_lab.netns.exec_prefix())

    listed = az("storage", "share", "list-handle", *base, "--path", "azdir/held.txt",
                prefix=prefix).json()["items"]
    assert [i["path"] for i in listed] == ["azdir/held.txt"]
    closed = az("storage", "share", "close-handle", *base, "--path", "azdir", "--close-all",
                "--recursive", prefix=prefix).json()
    assert closed == {"closed_handles_count": 1, "failed_handles_count": 0}
    assert held.probe() != "OK"
