"""Certificates made with `cryptography`: a certificate authority, the server and client
certificates it signs, their PEM encodings, and files written with secrets kept private.

Used by the gRPC servers' local credentials (`ledger.auth.local`) and by the local stack's
TLS listeners (`devstack.tls`). Elliptic-curve keys (P-256), as they are quick to make; private
keys are PKCS#8 and unencrypted, which is what grpc, Kafka's PEM keystore and PostgreSQL read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


@dataclass(frozen=True, slots=True)
class Authority:
    """A certificate authority that signs server and client certificates."""

    certificate: x509.Certificate
    key: PrivateKey

    @classmethod
    def new(cls, common_name: str, *, days: int) -> Authority:
        key = new_key()
        name = _name(common_name)
        certificate = (
            _builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, certificate: Path, key: Path) -> Authority:
        """An authority from its PEM certificate and (unencrypted) PEM key."""
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        if not isinstance(private, PrivateKey):
            raise ValueError(f"{key}: not an elliptic-curve private key")
        return cls(x509.load_pem_x509_certificate(certificate.read_bytes()), private)

    def save(self, certificate: Path, key: Path) -> None:
        """The key (0600), then the certificate."""
        write_file(key, private_key_pem(self.key), secret=True)
        write_file(certificate, certificate_pem(self.certificate))

    def server(self, common_name: str, hosts: Iterable[str], *, days: int) -> Issued:
        """A server certificate valid for `hosts`: DNS names, or IP addresses (as text)."""
        return self._issue(common_name, ExtendedKeyUsageOID.SERVER_AUTH, hosts, days)

    def client(self, common_name: str, *, days: int) -> Issued:
        """A client certificate (for mutual TLS) naming `common_name`."""
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, (), days)

    def _issue(
        self, common_name: str, purpose: x509.ObjectIdentifier, hosts: Iterable[str], days: int
    ) -> Issued:
        key = new_key()
        builder = (
            _builder(_name(common_name), self.certificate.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        alt_names = [_alt_name(host) for host in dict.fromkeys(hosts)]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    """PEM of one certificate, or of a chain in the order given (a server's own first)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, content: bytes, *, secret: bool = False) -> None:
    """Written whole or not at all; a secret readable by its owner only, from the start."""
    partial = path.with_name(path.name + ".partial")
    mode = 0o600 if secret else 0o644
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    # O_CREAT's mode only applies to a new file: one left behind by a crash keeps its own.
    os.fchmod(descriptor, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    os.replace(partial, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A little in the past: a peer whose clock is slightly behind still accepts it.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
