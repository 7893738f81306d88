"""A local certificate authority and the server certificates it signs, for the stack's TLS
listeners (Kafka's SASL_SSL listener, PostgreSQL's `ssl=on`).

Made once per data directory and kept: the CA stays the same across restarts, so clients that
trust it keep working. Elliptic-curve keys, as they are quick to make.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.ports import LOOPBACK

_VALID_FOR = datetime.timedelta(days=825)


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """PEM files: the CA to trust, the server's certificate (then the CA's) and its key."""

    ca: Path
    certificate: Path
    key: Path


def server_certificate(directory: Path, name: str) -> ServerCertificate:
    """`<directory>/<name>.pem` and `<name>-key.pem` for 127.0.0.1 and localhost, signed by the
    CA in `<directory>/ca.pem` (both made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
    if not (ca_file.is_file() and ca_key_file.is_file()):
        _write_ca(ca_file, ca_key_file)
    certificate, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    if not (certificate.is_file() and key.is_file()):
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        _write_server(certificate, key, name, ca, ca_key)
    return ServerCertificate(ca_file, certificate, key)


def _write_ca(certificate: Path, key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ledger local stack CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_file, key)
    certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _write_server(
    certificate: Path,
    key_file: Path,
    name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ledger-{name}")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_file, key)
    # The chain a server presents: its own certificate, then the CA's.
    certificate.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    # PKCS#8, unencrypted: what both Kafka's PEM keystore and PostgreSQL read.
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
