"""`az storage directory exists|show` and `az storage file exists|show`: the properties
operations az's handle commands rely on, typed directly."""

from __future__ import annotations

import pytest

from az_harness import SHARE, connection_string


def run(az, svc, *args):
    return az("storage", *args, "--share-name", SHARE, "--connection-string",
              connection_string(svc))


@pytest.mark.parametrize("name, exists", [
    ("docs", True), ("docs/deep", True), ("docs/report.txt", False), ("nope", False),
])
def test_directory_exists(az, svc, name, exists):
    assert run(az, svc, "directory", "exists", "--name", name).json() == {"exists": exists}


@pytest.mark.parametrize("path, exists", [
    ("docs/report.txt", True), ("top.bin", True), ("docs", False), ("docs/nope.txt", False),
])
def test_file_exists(az, svc, path, exists):
    assert run(az, svc, "file", "exists", "--path", path).json() == {"exists": exists}


def test_directory_show(az, svc):
    shown = run(az, svc, "directory", "show", "--name", "docs/deep").json()
    assert shown["name"] == "docs/deep" or shown.get("properties")
    assert shown["properties"]["etag"].startswith('"0x')


def test_file_show(az, svc):
    shown = run(az, svc, "file", "show", "--path", "docs/report.txt").json()
    assert shown["properties"]["contentLength"] == 0
    assert shown["properties"]["etag"].startswith('"0x')


def test_show_of_a_missing_path_fails(az, svc):
    result = run(az, svc, "file", "show", "--path", "docs/nope.txt")
    assert result.code != 0 and "ResourceNotFound" in result.stderr
