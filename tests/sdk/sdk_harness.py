"""Runs `share-hygiene handle-service` as a child process and talks to its admin endpoint.

The SDK under test only ever sees the service over real HTTP on a loopback port; this module
is the test's side channel that plays the SMB clients (opening and releasing handles).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from azure.storage.fileshare import ShareClient

from sdk_signing import signed_headers

# The public development-storage account and key (Azurite's; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CREDENTIAL = {"account_name": ACCOUNT, "account_key": KEY}
# The share most tests use.
SHARE = "myshare"

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0


def binary_path() -> Path:
    """SHARE_HYGIENE_BIN, else the debug build of this repository."""
    env = os.environ.get("SHARE_HYGIENE_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "share-hygiene"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A JSON string with ASCII escapes is a valid YAML double-quoted scalar, and keeps
    # characters YAML cannot hold raw (U+FFFE) as \uXXXX escapes.
    return json.dumps(str(value), ensure_ascii=True)


def _yaml_block(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml_block(v, indent + 2))
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            sub = _yaml_block(item, indent + 2) if isinstance(item, (dict, list)) else None
            if sub:
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def seed_yaml(shares: list[dict]) -> str:
    """The seed file for `shares` (dicts in the seed's camelCase shape), as block YAML."""
    return "\n".join(_yaml_block({"shares": shares}, 0)) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AdminResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HandleService:
    """One running handle service, seeded from a YAML file."""

    def __init__(
        self,
        workdir: Path,
        shares: list[dict],
        close_batch: int | None = None,
        key: str = KEY,
        host_name: str | None = None,
        extra_args: list[str] | None = None,
        https: bool = False,
    ) -> None:
        """`host_name` serves host-style (`--host-name`) instead of path-style; `extra_args`
        go to the command line as they are; `https` says they make it serve TLS."""
        self.workdir = workdir
        self.host_name = host_name
        self.extra_args = list(extra_args or [])
        self.scheme = "https" if https else "http"
        self.key = key
        self.seed_file = workdir / "seed.yaml"
        self.seed_file.write_text(seed_yaml(shares), encoding="utf-8")
        self.close_batch = close_batch
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stderr_file = workdir / "service.stderr"

    # -- process -------------------------------------------------------------------------

    def start(self) -> "HandleService":
        binary = binary_path()
        if not binary.is_file():
            raise RuntimeError(
                f"handle service binary {binary} does not exist: run `cargo build` "
                "or set SHARE_HYGIENE_BIN"
            )
        # The port is free when we probe it but may be taken before the service binds it;
        # a bind failure is retried on another port.
        for _attempt in range(5):
            self.port = free_port()
            args = [
                str(binary),
                "handle-service",
                "--seed",
                str(self.seed_file),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--account",
                ACCOUNT,
            ]
            if self.close_batch is not None:
                args += ["--close-batch", str(self.close_batch)]
            if self.host_name is not None:
                args += ["--host-name", self.host_name]
            args += self.extra_args
            env = dict(os.environ, SHARE_HYGIENE_ACCOUNT_KEY=self.key, NO_COLOR="1")
            env.setdefault("RUST_LOG", "info")
            with open(self.stderr_file, "wb") as err:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=env
                )
            failure = self._wait_ready()
            if failure is None:
                return self
            if "Address already in use" not in self.stderr():
                break
        raise RuntimeError(
            f"the handle service ({binary}) did not start listening on 127.0.0.1:{self.port}: "
            f"{failure}; its output:\n{self.stderr()}"
        )

    def _wait_ready(self) -> str | None:
        """None once the port accepts connections, else why it never will."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return f"it exited with code {code}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return None
            except OSError:
                time.sleep(0.02)
        self.stop()
        return f"still not listening after {STARTUP_TIMEOUT_S:.0f}s (stopped it)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stderr(self) -> str:
        try:
            return self.stderr_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- SDK clients ---------------------------------------------------------------------

    @property
    def account_url(self) -> str:
        """Path-style `http://127.0.0.1:PORT/ACCOUNT`, or host-style `http://HOST_NAME:PORT`
        (the name must resolve to loopback; see `test_addressing.py`)."""
        if self.host_name is not None:
            return f"{self.scheme}://{self.host_name}:{self.port}"
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    def share(self, name: str, credential: Any = None, **kwargs: Any) -> ShareClient:
        """An SDK share client, Shared Key by default; no retries so failures show at once."""
        kwargs.setdefault("retry_total", 0)
        return ShareClient(
            self.account_url,
            name,
            credential=CREDENTIAL if credential is None else credential,
            **kwargs,
        )

    # -- admin endpoint (the "SMB client" side) -------------------------------------------

    def admin(
        self,
        method: str,
        share: str | None = None,
        path: str = "",
        query: str = "",
        body: Any = None,
        key: str | None = None,
    ) -> AdminResponse:
        """One signed request to `/{account}/_admin[/{share}[/{path}]]` (host-style:
        `/_admin[...]` with the service's host name)."""
        raw_path = "/_admin" if self.host_name is not None else f"/{ACCOUNT}/_admin"
        if share is not None:
            raw_path += "/" + quote(share, safe="")
        if path:
            raw_path += "/" + quote(path, safe="/")
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Length": str(len(payload))}
        if payload:
            headers["Content-Type"] = "application/json"
        headers = signed_headers(
            method, ACCOUNT, key or self.key, raw_path, query, headers
        )
        if self.host_name is not None:
            headers["Host"] = f"{self.host_name}:{self.port}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            target = raw_path + (f"?{query}" if query else "")
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            return AdminResponse(
                resp.status,
                resp.reason,
                {k.lower(): v for k, v in resp.getheaders()},
                resp.read(),
            )
        finally:
            conn.close()

    def open_handles(
        self,
        share: str,
        path: str = "",
        *,
        client: str = "10.0.0.1:445",
        client_name: str | None = "testclient",
        count: int = 1,
        access: Iterable[str] = ("Read",),
        directory: bool = False,
        **extra: Any,
    ) -> list[str]:
        """Opens `count` handles on `path` as an SMB client would; returns their ids as the
        SDK spells them (decimal strings)."""
        body: dict[str, Any] = {"client": client, "count": count, "access": list(access)}
        if client_name is not None:
            body["clientName"] = client_name
        if directory:
            body["directory"] = True
        body.update(extra)
        resp = self.admin("POST", share, path, "comp=open", body)
        assert resp.status == 201, f"admin open failed: {resp.status} {resp.reason} {resp.body!r}"
        ids = [str(i) for i in resp.json()["handleIds"]]
        assert len(ids) == count
        return ids

    def release(self, share: str, ids: Iterable[str]) -> int:
        """Closes handles from the client side; returns how many were open."""
        body = {"handleIds": [int(i) for i in ids]}
        resp = self.admin("POST", share, "", "comp=release", body)
        assert resp.status == 200, f"admin release failed: {resp.status} {resp.reason} {resp.body!r}"
        return resp.json()["released"]
