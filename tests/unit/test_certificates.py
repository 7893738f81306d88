"""The one place certificates are made: a CA, and the server and client certificates it signs."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ledger.certificates import Authority, certificate_pem, write_file


def test_a_server_certificate_names_its_hosts_and_verifies_against_the_ca(tmp_path: Path) -> None:
    ca = Authority.new("Test CA", days=1)
    server = ca.server("test-server", ["localhost", "127.0.0.1", "::1", "db"], days=1)
    names = server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost", "db"]
    assert names.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usage = server.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # OpenSSL itself accepts the chain, the key and the host name, as a TLS server would.
    (tmp_path / "chain.pem").write_bytes(certificate_pem(server.certificate, ca.certificate))
    (tmp_path / "key.pem").write_bytes(server.key_pem)
    (tmp_path / "ca.pem").write_bytes(certificate_pem(ca.certificate))
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        tmp_path / "chain.pem", tmp_path / "key.pem"
    )
    server.certificate.verify_directly_issued_by(ca.certificate)  # raises if not


def test_a_client_certificate_is_for_client_authentication_only() -> None:
    ca = Authority.new("Test CA", days=1)
    client = ca.client("someone", days=1)
    usage = client.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usage.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_a_saved_authority_loads_again_with_its_key_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    ca = Authority.new("Test CA", days=1)
    ca.save(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    loaded = Authority.load(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    assert loaded.certificate == ca.certificate
    assert loaded.key.private_numbers() == ca.key.private_numbers()


def test_a_secret_file_left_half_written_with_a_wider_mode_is_still_written_0600(
    tmp_path: Path,
) -> None:
    left = tmp_path / "token.partial"
    left.write_bytes(b"half")
    left.chmod(0o644)
    write_file(tmp_path / "token", b"secret", secret=True)
    assert (tmp_path / "token").read_bytes() == b"secret"
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert not left.exists()
