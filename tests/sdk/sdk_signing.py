"""Shared Key signing for hand-made requests (the admin endpoint), written from the protocol.

Deliberately independent of the SDK's own signing code: if both this and the SDK are accepted
by the service, the service verifies the documented string-to-sign and not one client's quirks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import formatdate
from urllib.parse import unquote

# The header slots between the verb and the x-ms-* headers, in string-to-sign order.
_FIXED_SLOTS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(
    method: str, account: str, raw_path: str, raw_query: str, headers: dict[str, str]
) -> str:
    """The Shared Key string-to-sign of a request.

    `raw_path` is the path exactly as sent (percent-encoded, starting with `/{account}` for
    path-style endpoints, which gives the doubled `/{account}/{account}/...` resource every SDK
    signs); `raw_query` is the query string as sent, without `?`.
    """
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    lines = [method.upper()]
    for slot in _FIXED_SLOTS:
        value = lower.get(slot, "")
        if slot == "content-length" and value == "0":
            value = ""
        lines.append(value)
    sts = "\n".join(lines) + "\n"
    for name in sorted(k for k in lower if k.startswith("x-ms-")):
        sts += f"{name}:{lower[name]}\n"
    sts += f"/{account}{raw_path}"
    params: dict[str, list[str]] = {}
    for pair in filter(None, raw_query.split("&")):
        name, _, value = pair.partition("=")
        params.setdefault(unquote(name).lower(), []).append(unquote(value))
    for name in sorted(params):
        sts += f"\n{name}:{','.join(sorted(params[name]))}"
    return sts


def sign(key_b64: str, sts: str) -> str:
    """base64(HMAC-SHA256(base64decode(key), utf8(sts)))."""
    mac = hmac.new(base64.b64decode(key_b64), sts.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed_headers(
    method: str,
    account: str,
    key_b64: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    version: str = "2025-11-05",
) -> dict[str, str]:
    """`headers` plus `x-ms-date`, `x-ms-version` and a Shared Key `Authorization`."""
    out = dict(headers)
    out["x-ms-date"] = formatdate(usegmt=True)
    out["x-ms-version"] = version
    sts = string_to_sign(method, account, raw_path, raw_query, out)
    out["Authorization"] = f"SharedKey {account}:{sign(key_b64, sts)}"
    return out
