"""A real Samba server in a private network namespace, real SMB clients, and our handle service.

Everything here is reusable by other end-to-end tests (a sweep test, benchmarks):

- `SambaLab`: smbd from Debian's packages, its state in a temporary directory, listening on
  port 445 inside a network namespace it creates (only that namespace's loopback is used).
  `net rpc file` (MS-SRVS) dials port 445 only, hence the namespace. It also creates a unix
  user in BUILTIN\\Administrators, the login NetFileEnum and NetFileClose need.
- `Netns.call(fn)`: runs `fn` on a thread that joined the namespace, so sockets it opens
  (SMB clients, the Azure SDK's HTTP connections) live there; sockets keep working from any
  thread afterwards.
- `SmbClient`: an smbprotocol connection holding file and directory handles WITHOUT oplocks
  (smbprotocol 1.17 cannot handle oplock or lease breaks), with probes that report each
  handle's NTSTATUS on READ/FLUSH/QUERY_DIRECTORY.
- `SambaHandleService`: `share-hygiene handle-service --backend samba` in the namespace, and
  Azure SDK clients for it.

Requires root (network namespaces, smbd, smbstatus).
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (
    CreateContextName,
    SMB2CreateContextRequest,
    SMB2CreateDurableHandleRequestV2,
)
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    DirectoryAccessMask,
    FileAttributes,
    FileInformationClass,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    QueryDirectoryFlags,
    RequestedOplockLevel,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

STATUS_FILE_CLOSED = 0xC0000128
ACCOUNT = "devstoreaccount1"
SERVICE_PORT = 10004
REPO = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def is_root() -> bool:
    return os.geteuid() == 0


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


class Netns:
    """A network namespace this process created (and deletes)."""

    def __init__(self, name: str):
        self.name = name
        run(["ip", "netns", "add", name])
        run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])

    def call(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn` on a fresh thread inside the namespace and returns its result."""
        box: dict[str, Any] = {}

        def body():
            try:
                with open(f"/var/run/netns/{self.name}", "rb") as f:
                    if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                box["value"] = fn()
            except BaseException as e:  # re-raised on the caller's thread
                box["error"] = e

        t = threading.Thread(target=body, name=f"netns-{self.name}")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def delete(self):
        run(["ip", "netns", "del", self.name], check=False)


class SambaLab:
    """smbd on 127.0.0.1:445 inside a private network namespace, state in a temp dir."""

    USER = "shygiene-e2e"
    PASSWORD = "E2e-Passw0rd!"
    ADMIN_GROUP = "shygiene-e2e-admins"
    NETBIOS = "SHTESTSRV"

    def __init__(self, shares: tuple[str, ...] = ("data", "other")):
        self.dir = Path(tempfile.mkdtemp(prefix="share-hygiene-samba-"))
        self.conf = self.dir / "smb.conf"
        self.shares = shares
        self.netns = Netns(f"shygiene-{os.getpid()}")
        self._smbd: subprocess.Popen | None = None
        self._created_user = False
        self._created_group = False

    # --- setup -------------------------------------------------------------------------
    def share_path(self, share: str) -> Path:
        return self.dir / "shares" / share

    def start(self) -> "SambaLab":
        d = self.dir
        for sub in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "binddns"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for share in self.shares:
            self.share_path(share).mkdir(parents=True)
            os.chmod(self.share_path(share), 0o777)
        os.chmod(d, 0o755)
        sections = "".join(
            f"""
[{share}]
  path = {self.share_path(share)}
  read only = no
  durable handles = yes
  kernel oplocks = no
  kernel share modes = no
  posix locking = no
"""
            for share in self.shares
        )
        self.conf.write_text(
            f"""# written by the share-hygiene end-to-end harness
[global]
  workgroup = SHTEST
  netbios name = {self.NETBIOS}
  server role = standalone server
  smb ports = 445
  interfaces = lo
  bind interfaces only = yes
  disable netbios = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  binddns dir = {d}/binddns
  log file = {d}/log/log.%m
  max log size = 0
  log level = 1
  passdb backend = tdbsam:{d}/private/passdb.tdb
  server min protocol = SMB2_02
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
{sections}"""
        )
        self._accounts()
        log = open(d / "log" / "smbd.stdout", "wb")
        self._smbd = subprocess.Popen(
            self.netns.exec_prefix()
            + ["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(self.conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_port(445, what="smbd")
        return self

    def _accounts(self):
        conf = str(self.conf)
        if run(["id", self.USER], check=False).returncode != 0:
            run(["useradd", "-M", "-s", "/usr/sbin/nologin", self.USER])
            self._created_user = True
        if run(["getent", "group", self.ADMIN_GROUP], check=False).returncode != 0:
            run(["groupadd", self.ADMIN_GROUP])
            self._created_group = True
        run(
            ["smbpasswd", "-c", conf, "-s", "-a", self.USER],
            input=f"{self.PASSWORD}\n{self.PASSWORD}\n",
        )
        # A standalone tdbsam server has no BUILTIN\Administrators until it is mapped to a unix
        # group. Members get NetFileEnum and (Samba grants them every privilege)
        # SeDiskOperatorPrivilege, which NetFileClose needs.
        run(
            ["net", "-s", conf, "groupmap", "add", "sid=S-1-5-32-544",
             f"unixgroup={self.ADMIN_GROUP}", "type=builtin", "ntgroup=Administrators"]
        )
        run(["net", "-s", conf, "sam", "addmem", "BUILTIN\\Administrators", f"{self.NETBIOS}\\{self.USER}"])

    def credentials_file(self) -> Path:
        path = self.dir / "rpc-credentials"
        path.write_text(f"username = {self.USER}\npassword = {self.PASSWORD}\n")
        os.chmod(path, 0o600)
        return path

    def wait_port(self, port: int, what: str, timeout: float = 15.0, proc: subprocess.Popen | None = None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")

            def probe():
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True

            try:
                if self.netns.call(probe):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} in the namespace")

    # --- inspection --------------------------------------------------------------------
    def smbstatus(self, *args: str) -> str:
        return run(["smbstatus", "-s", str(self.conf), *args]).stdout

    def client(self, share: str = "data") -> "SmbClient":
        return SmbClient(self, share)

    # --- teardown ----------------------------------------------------------------------
    def stop(self):
        if self._smbd is not None and self._smbd.poll() is None:
            self._smbd.send_signal(signal.SIGTERM)
            try:
                self._smbd.wait(10)
            except subprocess.TimeoutExpired:
                self._smbd.kill()
        # samba-dcerpcd (started on demand for \pipe\srvsvc) outlives smbd: stop it by its pid
        # file, then anything still naming our smb.conf (only processes this lab started).
        pidfile = self.dir / "pid" / "samba-dcerpcd.pid"
        if pidfile.exists():
            self._kill_if_ours(pidfile.read_text().strip())
        deadline = time.time() + 5
        while time.time() < deadline and self._lab_pids():
            time.sleep(0.1)
        for pid in self._lab_pids():
            self._kill_if_ours(str(pid), signal.SIGKILL)
        self.netns.delete()
        if self._created_user:
            run(["userdel", self.USER], check=False)
        if self._created_group:
            run(["groupdel", self.ADMIN_GROUP], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _lab_pids(self) -> list[int]:
        pids = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == os.getpid():
                continue
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if str(self.conf).encode() in cmdline:
                pids.append(int(p.name))
        return pids

    def _kill_if_ours(self, pid: str, sig=signal.SIGTERM):
        if not pid.isdigit():
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if str(self.conf).encode() in cmdline:
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass


RWD = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE


class Held:
    """One handle a client holds."""

    def __init__(self, path: str, open_: Open, directory: bool):
        self.path = path  # share-relative, `/`-separated
        self.open = open_
        self.directory = directory

    def probe(self, op: str = "read") -> str:
        """`OK` or the NTSTATUS (`0xc0000128`) the server answered."""
        try:
            if self.directory:
                self.open.query_directory(
                    "*", FileInformationClass.FILE_NAMES_INFORMATION, flags=QueryDirectoryFlags.SMB2_RESTART_SCANS
                )
            elif op == "flush":
                self.open.flush()
            else:
                self.open.read(0, 1)
            return "OK"
        except SMBResponseException as e:
            return "0x%08x" % e.status


class SmbClient:
    """One SMB connection (one smbd process), session and tree connect, holding handles."""

    def __init__(self, lab: SambaLab, share: str):
        self.lab = lab
        self.share = share

        def connect():
            conn = Connection(uuid.uuid4(), "127.0.0.1", 445)
            conn.connect()
            return conn

        self.conn = lab.netns.call(connect)
        self.session = Session(self.conn, lab.USER, lab.PASSWORD)
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\127.0.0.1\{share}")
        self.tree.connect()
        self.held: list[Held] = []

    def open_dir(self, path: str) -> Held:
        o = Open(self.tree, path.replace("/", "\\"))
        o.create(
            ImpersonationLevel.Impersonation,
            DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
            FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
            RWD,
            CreateDisposition.FILE_OPEN_IF,
            CreateOptions.FILE_DIRECTORY_FILE,
        )
        h = Held(path, o, True)
        self.held.append(h)
        return h

    def open_file(self, path: str, durable: bool = False, write: bool = True) -> Held:
        """Creates (or truncates) and holds a file; `durable` asks for a durable v2 handle,
        which needs a batch oplock: no other client may open that file while it is held."""
        o = Open(self.tree, path.replace("/", "\\"))
        contexts = None
        oplock = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE
        if durable:
            ctx = SMB2CreateContextRequest()
            ctx["buffer_name"] = CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2
            req = SMB2CreateDurableHandleRequestV2()
            req["timeout"] = 300_000
            req["create_guid"] = uuid.uuid4()
            ctx["buffer_data"] = req
            contexts = [ctx]
            oplock = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
        access = FilePipePrinterAccessMask.GENERIC_READ
        if write:
            access |= FilePipePrinterAccessMask.GENERIC_WRITE
        o.create(
            ImpersonationLevel.Impersonation,
            access,
            FileAttributes.FILE_ATTRIBUTE_NORMAL,
            RWD,
            CreateDisposition.FILE_OVERWRITE_IF if write else CreateDisposition.FILE_OPEN_IF,
            CreateOptions.FILE_NON_DIRECTORY_FILE,
            create_contexts=contexts,
            oplock_level=oplock,
        )
        if write:
            o.write(b"data\n", 0)
        h = Held(path, o, False)
        self.held.append(h)
        return h

    def drop(self):
        """Drops the TCP connection without closing anything: durable opens stay behind as
        disconnected opens."""
        self.conn.disconnect(close=False)

    def close(self):
        try:
            self.conn.disconnect(close=True)
        except Exception:
            pass


def wait_status(handles: list[Held], want: str, op: str = "read", timeout: float = 3.0) -> dict[str, str]:
    """Probes until every handle answers `want` (NetFileClose is asynchronous: smbd closes the
    open when the message arrives, about a millisecond later) or the time is up."""
    deadline = time.time() + timeout
    while True:
        got = {h.path: h.probe(op) for h in handles}
        if all(v == want for v in got.values()) or time.time() > deadline:
            return got
        time.sleep(0.05)


class SambaHandleService:
    """`share-hygiene handle-service --backend samba` inside the lab's namespace."""

    def __init__(
        self,
        lab: SambaLab,
        close_batch: int = 1000,
        extra_args: tuple[str, ...] = (),
        env: dict | None = None,
        port: int = SERVICE_PORT,
    ):
        self.lab = lab
        self.port = port
        self.key = base64.b64encode(os.urandom(32)).decode()
        self.bin = os.environ.get("SHARE_HYGIENE_BIN") or str(REPO / "target" / "debug" / "share-hygiene")
        self.log_path = lab.dir / "log" / f"handle-service-{uuid.uuid4().hex[:8]}.log"
        self.close_batch = close_batch
        self.extra_args = extra_args
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SambaHandleService":
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "SHARE_HYGIENE_ACCOUNT_KEY": self.key,
            "RUST_LOG": os.environ.get("RUST_LOG", "share_hygiene=debug"),
            **self.env,
        }
        cmd = self.lab.netns.exec_prefix() + [
            self.bin, "--log-format", "json", "handle-service",
            "--backend", "samba",
            "--smb-conf", str(self.lab.conf),
            "--samba-credentials-file", str(self.lab.credentials_file()),
            "--listen", f"127.0.0.1:{self.port}",
            "--close-batch", str(self.close_batch),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"), stdin=subprocess.DEVNULL
        )
        self.lab.wait_port(self.port, what="the handle service", proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={self.key};"
            f"FileEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT}"
        )

    def share_client(self, share: str = "data"):
        from azure.storage.fileshare import ShareClient

        return ShareClient.from_connection_string(self.connection_string(), share)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Runs SDK calls inside the namespace (where the service listens)."""
        return self.lab.netns.call(fn)
