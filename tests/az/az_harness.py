"""Runs the Azure CLI (`az`) against a handle service, offline, exactly as people type it.

The service is started by the SDK tests' harness (`tests/sdk/sdk_harness.py`); `az` comes
from its own venv (`.venv-az`, made by `scripts/setup.sh` from `tests/az/requirements.txt`)
because it pins its own copy of the file-share SDK. `az` reaches the service through a
connection string whose `FileEndpoint` is the path-style endpoint, and never the network:
telemetry is off, its configuration lives in a fresh directory whose version cache says it
is up to date (a fresh one makes `az` look for a newer release online), and any proxy-aware
request to a host other than loopback goes to a closed local port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "sdk"))

from sdk_harness import ACCOUNT, KEY, SHARE, HandleService  # noqa: E402

__all__ = ["ACCOUNT", "KEY", "SHARE", "Az", "AzResult", "HandleService", "az_binary", "connection_string"]

# One az call is a fresh Python process loading the CLI: seconds, not milliseconds.
AZ_TIMEOUT_S = 120.0


def az_binary() -> Path:
    """SHARE_HYGIENE_AZ, else the `az` of this repository's `.venv-az`."""
    env = os.environ.get("SHARE_HYGIENE_AZ")
    return Path(env) if env else REPO_ROOT / ".venv-az" / "bin" / "az"


def connection_string(svc: HandleService, key: str | None = KEY, sas: str | None = None) -> str:
    """What a user pastes into `--connection-string`, pointed at the service's path-style
    endpoint: the account key, or a SAS token instead."""
    parts = ["DefaultEndpointsProtocol=http", f"AccountName={ACCOUNT}"]
    if sas is not None:
        parts.append(f"SharedAccessSignature={sas}")
    elif key is not None:
        parts.append(f"AccountKey={key}")
    parts.append(f"FileEndpoint={svc.account_url}")
    return ";".join(parts) + ";"


@dataclass
class AzResult:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def shown(self) -> str:
        """The command line for messages, with the connection string (a key or a SAS) left out."""
        out = []
        for i, a in enumerate(self.args):
            out.append("<redacted>" if i and self.args[i - 1] == "--connection-string" else a)
        return "az " + " ".join(out)

    def json(self) -> Any:
        assert self.code == 0, f"{self.shown()} failed ({self.code}):\n{self.stderr}"
        return json.loads(self.stdout)


class Az:
    """The `az` command with an isolated, offline configuration under `config_dir`."""

    def __init__(self, config_dir: Path) -> None:
        self.binary = az_binary()
        if not self.binary.is_file():
            raise RuntimeError(
                f"the Azure CLI {self.binary} does not exist: run scripts/setup.sh "
                "(it makes .venv-az) or set SHARE_HYGIENE_AZ"
            )
        self.config_dir = config_dir
        config_dir.mkdir(parents=True, exist_ok=True)
        self._mark_version_checked()
        self.env = dict(
            os.environ,
            AZURE_CONFIG_DIR=str(config_dir),
            AZURE_CORE_COLLECT_TELEMETRY="false",
            AZURE_CORE_SURVEY_MESSAGE="false",
            AZURE_CORE_NO_COLOR="true",
            AZURE_CORE_OUTPUT="json",
            # Anything that would leave the machine goes to a closed local port instead.
            HTTP_PROXY="http://127.0.0.1:9",
            HTTPS_PROXY="http://127.0.0.1:9",
            NO_PROXY="127.0.0.1,localhost",
        )
        for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY",
                     "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_ACCOUNT"):
            self.env.pop(name, None)

    def _mark_version_checked(self) -> None:
        """Writes the version cache `az` keeps, as if it had just checked for a newer
        release: with none, its first run asks a Microsoft storage account over the network."""
        version = subprocess.run(
            [str(self.binary.parent / "python"), "-c",
             "from azure.cli.core import __version__; print(__version__)"],
            capture_output=True, text=True, check=True, timeout=AZ_TIMEOUT_S,
        ).stdout.strip()
        cache = {
            "versions": {"azure-cli": {"local": version}, "core": {"local": version}},
            "update_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
        (self.config_dir / "versionCheck.json").write_text(json.dumps(cache), encoding="utf-8")

    def __call__(self, *args: str, prefix: tuple[str, ...] = ()) -> AzResult:
        """Runs `az ARGS...` (after `prefix`, such as `ip netns exec NAME`); never raises on
        az's own failure (tests check `code`)."""
        argv = [*prefix, str(self.binary), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=AZ_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        return AzResult(list(args), done.returncode, done.stdout, done.stderr)
