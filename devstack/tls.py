"""A local certificate authority and the server certificates it signs, for the stack's TLS
listeners (Kafka's SASL_SSL listener, PostgreSQL's `ssl=on`); made with `ledger.certificates`.

Made once per data directory and kept: the CA stays the same across restarts, so clients that
trust it keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.ports import LOOPBACK
from ledger.certificates import Authority, certificate_pem, write_file

_VALID_DAYS = 825


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
        Authority.new("Ledger local stack CA", days=_VALID_DAYS).save(ca_file, ca_key_file)
    certificate, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    if not (certificate.is_file() and key.is_file()):
        ca = Authority.load(ca_file, ca_key_file)
        server = ca.server(f"ledger-{name}", ["localhost", LOOPBACK], days=_VALID_DAYS)
        write_file(key, server.key_pem, secret=True)
        # The chain a server presents: its own certificate, then the CA's.
        write_file(certificate, certificate_pem(server.certificate, ca.certificate))
    return ServerCertificate(ca_file, certificate, key)
