"""Credentials for the local stack (`make run`), made once with `cryptography` and reused:

    ca.pem, ca.key            a local certificate authority (trust ca.pem in clients)
    server.pem, server.key    the servers' certificate, for localhost, 127.0.0.1, ::1 and any
                              other host names asked for (compose's service names)
    signing.key, jwks.json    the ES256 key tokens are signed with, and its public half
    writer.token              ledger:write ledger:read, all accounts
    reader.token              ledger:read, all accounts
    admin.token               ledger:admin ledger:write ledger:read, all accounts

Private keys and tokens are written 0600. The CA and the server certificate last
`CERTIFICATE_DAYS`, the tokens `TOKEN_DAYS`; delete the directory to start afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.auth.policy import ADMIN, READ, WRITE
from ledger.auth.principal import ACCOUNTS_CLAIM, SCOPE_CLAIM
from ledger.certificates import Authority, new_key, private_key_pem, write_file
from ledger.personal_data import new_key_encryption_key_text

LOCAL_ISSUER = "ledger-local"
LOCAL_AUDIENCE = "ledger"
CERTIFICATE_DAYS = 3650
TOKEN_DAYS = 365
ALGORITHM = "ES256"
# The server certificate is valid for these, and for the host names asked for.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

READY_TOKENS = {
    "writer": (WRITE, READ),
    "reader": (READ,),
    "admin": (ADMIN, WRITE, READ),
}


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def signing_key(self) -> Path:
        return self.directory / "signing.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def jwks(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def key_encryption_key(self) -> Path:
        """The key that wraps the accounts' data keys (LEDGER_KEY_ENCRYPTION_KEY_FILE)."""
        return self.directory / "key-encryption.key"

    def token(self, name: str) -> str:
        """A ready token: writer, reader or admin."""
        return (self.directory / f"{name}.token").read_text().strip()

    def server_environment(self, *, client_ca: Path | None = None) -> dict[str, str]:
        """The variables that make a Ledger gRPC server use these credentials."""
        env = {
            "LEDGER_TLS_CERT": str(self.server_cert),
            "LEDGER_TLS_KEY": str(self.server_key),
            "LEDGER_JWKS": str(self.jwks),
            "LEDGER_JWT_ISSUER": LOCAL_ISSUER,
            "LEDGER_JWT_AUDIENCE": LOCAL_AUDIENCE,
            "LEDGER_KEY_ENCRYPTION_KEY_FILE": str(self.key_encryption_key),
        }
        if client_ca is not None:
            env["LEDGER_TLS_CLIENT_CA"] = str(client_ca)
        return env

    def mint(
        self,
        scopes: Iterable[str],
        *,
        accounts: Iterable[str] | None = None,
        ttl_seconds: float = TOKEN_DAYS * 86400,
        subject: str = "local",
        audience: str = LOCAL_AUDIENCE,
    ) -> str:
        """A token signed with the local key."""
        key = self.signing_key.read_bytes()  # PEM, which PyJWT loads itself
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": LOCAL_ISSUER,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "jti": uuid.uuid4().hex,
            SCOPE_CLAIM: " ".join(scopes),
        }
        if accounts is not None:
            claims[ACCOUNTS_CLAIM] = list(accounts)
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": self._kid()})

    def client_certificate(self, name: str) -> tuple[bytes, bytes]:
        """(certificate, key), PEM, of a client certificate signed by the local CA (for mutual
        TLS, LEDGER_TLS_CLIENT_CA=ca.pem)."""
        issued = Authority.load(self.ca, self.ca_key).client(name, days=CERTIFICATE_DAYS)
        return issued.certificate_pem, issued.key_pem

    def _kid(self) -> str:
        [key] = json.loads(self.jwks.read_text())["keys"]
        return str(key["kid"])


def ensure_local_credentials(directory: Path, hosts: Sequence[str] = ()) -> LocalCredentials:
    """The credentials in `directory`, made there first if it has none; the server certificate
    is then also valid for the DNS names `hosts`."""
    credentials = LocalCredentials(directory)
    # Apart from the rest: directories made before owners were sealed lack only this.
    ensure_key_encryption_key(credentials.key_encryption_key)
    # The ready tokens are written last: with them there, everything else is too.
    if all((directory / f"{name}.token").exists() for name in READY_TOKENS):
        return credentials
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca = Authority.new("Ledger local CA", days=CERTIFICATE_DAYS)
    ca.save(credentials.ca, credentials.ca_key)
    server = ca.server("localhost", [*LOCAL_HOSTS, *hosts], days=CERTIFICATE_DAYS)
    write_file(credentials.server_key, server.key_pem, secret=True)
    write_file(credentials.server_cert, server.certificate_pem)
    signing = new_key()
    write_file(credentials.signing_key, private_key_pem(signing), secret=True)
    jwks = {"keys": [_public_jwk(signing.public_key())]}
    write_file(credentials.jwks, json.dumps(jwks).encode())
    for name, scopes in READY_TOKENS.items():
        token = credentials.mint(scopes, subject=f"local-{name}")
        write_file(directory / f"{name}.token", (token + "\n").encode(), secret=True)
    return credentials


def ensure_key_encryption_key(path: Path) -> Path:
    """`path`, holding a new random key-encryption key unless it holds one already."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file(path, new_key_encryption_key_text().encode(), secret=True)
    return path


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> Mapping[str, object]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {**jwk, "kid": hashlib.sha256(der).hexdigest()[:16], "alg": ALGORITHM, "use": "sig"}
