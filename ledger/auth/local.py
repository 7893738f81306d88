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

import datetime as dt
import hashlib
import ipaddress
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.auth.policy import ADMIN, READ, WRITE
from ledger.auth.principal import ACCOUNTS_CLAIM, SCOPE_CLAIM

LOCAL_ISSUER = "ledger-local"
LOCAL_AUDIENCE = "ledger"
CERTIFICATE_DAYS = 3650
TOKEN_DAYS = 365
ALGORITHM = "ES256"

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
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def jwks(self) -> Path:
        return self.directory / "jwks.json"

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
        key = (self.directory / "signing.key").read_bytes()  # PEM, which PyJWT loads itself
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
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _signed(self, _name(name), key.public_key(), client=True, alt_names=[])
        return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)

    def _kid(self) -> str:
        [key] = json.loads(self.jwks.read_text())["keys"]
        return str(key["kid"])


def ensure_local_credentials(directory: Path, hosts: Sequence[str] = ()) -> LocalCredentials:
    """The credentials in `directory`, made there first if it has none; the server certificate
    is then also valid for the DNS names `hosts`."""
    credentials = LocalCredentials(directory)
    # The ready tokens are written last: with them there, everything else is too.
    if all((directory / f"{name}.token").exists() for name in READY_TOKENS):
        return credentials
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Ledger local CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.key", _private_pem(ca_key), secret=True)
    _write(credentials.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        *(x509.DNSName(host) for host in dict.fromkeys(hosts) if host != "localhost"),
    ]
    server = _signed(credentials, _name("localhost"), server_key.public_key(), False, alt_names)
    _write(credentials.server_key, _private_pem(server_key), secret=True)
    _write(credentials.server_cert, server.public_bytes(serialization.Encoding.PEM))
    signing = ec.generate_private_key(ec.SECP256R1())
    _write(directory / "signing.key", _private_pem(signing), secret=True)
    _write(credentials.jwks, json.dumps({"keys": [_public_jwk(signing.public_key())]}).encode())
    for name, scopes in READY_TOKENS.items():
        token = credentials.mint(scopes, subject=f"local-{name}")
        _write(directory / f"{name}.token", (token + "\n").encode(), secret=True)
    return credentials


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> Mapping[str, object]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {**jwk, "kid": hashlib.sha256(der).hexdigest()[:16], "alg": ALGORITHM, "use": "sig"}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERTIFICATE_DAYS))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _signed(
    credentials: LocalCredentials,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    client: bool,
    alt_names: list[x509.GeneralName],
) -> x509.Certificate:
    """A leaf certificate signed by the local CA."""
    ca_cert = x509.load_pem_x509_certificate(credentials.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(
        (credentials.directory / "ca.key").read_bytes(), None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(subject, ca_cert.subject, public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, content: bytes, *, secret: bool = False) -> None:
    """Written whole or not at all; secrets readable by their owner only from the start."""
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    os.replace(partial, path)
