"""A local Entra ID for the SDK tests: what azure-identity needs to get a storage token.

The Rust tests have the same issuer in tests/common_entra (in process); the SDK tests run the
service as a child process and azure-identity in this one, so this issuer lives here too.

azure-identity accepts only an https authority, so the token side is served over TLS with a
test CA made here (the same CA signs the handle service's certificate, and the SDK clients
trust it through `connection_verify`). The handle service reads the OpenID configuration and
keys over plain http on loopback, which it accepts only there: tokens carry that http issuer.

Endpoints (Entra's paths): `/{tenant}/v2.0/.well-known/openid-configuration`,
`/{tenant}/discovery/v2.0/keys`, `POST /{tenant}/oauth2/v2.0/token` with `client_credentials`
and a client secret or a federated `client_assertion` (an RS256 JWT from a trusted issuer,
standing for the cluster's service-account issuer).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ASSERTION_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """An RSA key that signs RS256 JWTs under its key id."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        numbers = self.private.public_key().public_numbers()

        def to_bytes(n: int) -> bytes:
            return n.to_bytes((n.bit_length() + 7) // 8, "big")

        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": b64url(to_bytes(numbers.n)),
            "e": b64url(to_bytes(numbers.e)),
        }

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = self.private.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64url(sig)}"

    def verify(self, token: str) -> dict | None:
        """The claims of an RS256 JWT this key signed, else None."""
        try:
            signed, sig = token.rsplit(".", 1)
            header_b64, payload_b64 = signed.split(".")
            if json.loads(b64url_decode(header_b64)).get("alg") != "RS256":
                return None
            self.private.public_key().verify(
                b64url_decode(sig), signed.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            return json.loads(b64url_decode(payload_b64))
        except Exception:  # noqa: BLE001 - any fault means "not signed by this key"
            return None


def write_test_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost:
    (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "share-hygiene test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


class LocalEntra:
    """The issuer: an https side for azure-identity and an http side for the service."""

    def __init__(self, tenant: str, cert: Path, key: Path) -> None:
        self.tenant = tenant
        self.signing_key = SigningKey("key-1")
        self.apps: dict[str, dict] = {}
        self.federation: dict[str, SigningKey] = {}
        self.tokens_issued = 0
        entra = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                if path == f"/{tenant}/v2.0/.well-known/openid-configuration":
                    self._json(200, entra.openid_configuration(self.server.base))
                elif path == f"/{tenant}/discovery/v2.0/keys":
                    self._json(200, {"keys": [entra.signing_key.jwk()]})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path.split("?")[0] != f"/{tenant}/oauth2/v2.0/token":
                    self._json(404, {"error": "not_found"})
                    return
                status, body = entra.token(form)
                self._json(status, body)

        self.https = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.https.socket = context.wrap_socket(self.https.socket, server_side=True)
        self.https.base = f"https://127.0.0.1:{self.https.server_address[1]}"
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.base = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in (self.https, self.http)
        ]
        for t in self.threads:
            t.start()

    @property
    def authority(self) -> str:
        """What azure-identity takes as `authority` (the "login.microsoftonline.com")."""
        return self.https.base

    @property
    def issuer(self) -> str:
        """The issuer the handle service is configured with and tokens carry."""
        return f"{self.http.base}/{self.tenant}/v2.0"

    def openid_configuration(self, base: str) -> dict:
        t = self.tenant
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/{t}/discovery/v2.0/keys",
            "token_endpoint": f"{base}/{t}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/{t}/oauth2/v2.0/authorize",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token"],
            "subject_types_supported": ["pairwise"],
        }

    def add_secret_app(self, client_id: str, oid: str, secret: str) -> None:
        self.apps[client_id] = {"oid": oid, "secret": secret}

    def add_federated_app(
        self, client_id: str, oid: str, issuer: str, subject: str, key: SigningKey
    ) -> None:
        self.federation[issuer] = key
        self.apps[client_id] = {"oid": oid, "federated": (issuer, subject)}

    def token(self, form: dict) -> tuple[int, dict]:
        def error(code: str, description: str) -> tuple[int, dict]:
            return 400, {"error": code, "error_description": description}

        if form.get("grant_type") != "client_credentials":
            return error("unsupported_grant_type", "only client_credentials")
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            return error("unauthorized_client", "no such application")
        if "client_secret" in form:
            proven = app.get("secret") == form["client_secret"]
        elif form.get("client_assertion_type") == ASSERTION_TYPE and "federated" in app:
            issuer, subject = app["federated"]
            claims = self.federation[issuer].verify(form.get("client_assertion", ""))
            proven = (
                claims is not None
                and claims.get("iss") == issuer
                and claims.get("sub") == subject
                and claims.get("aud") == ASSERTION_AUDIENCE
                and claims.get("exp", 0) > time.time()
            )
        else:
            proven = False
        if not proven:
            return error("invalid_client", "the client could not prove its identity")
        scopes = form.get("scope", "").split()
        resource = next((s[: -len("/.default")] for s in scopes if s.endswith("/.default")), None)
        if resource is None:
            return error("invalid_scope", "scope must be RESOURCE/.default")
        now = int(time.time())
        claims = {
            "aud": f"{resource}/",
            "iss": self.issuer,
            "tid": self.tenant,
            "oid": app["oid"],
            "sub": app["oid"],
            "appid": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        self.tokens_issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": self.signing_key.sign(claims),
        }

    def stop(self) -> None:
        for server in (self.https, self.http):
            server.shutdown()
            server.server_close()
