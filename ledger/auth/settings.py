"""How a gRPC server is secured, read from the environment: TLS (optionally mutual) and bearer
token verification. Nothing listens in plaintext or without authentication unless
LEDGER_INSECURE=1 says so, and then only on a loopback address.

    LEDGER_TLS_CERT, LEDGER_TLS_KEY   the server's certificate chain and key (PEM files)
    LEDGER_TLS_CLIENT_CA              optional: clients must present a certificate it signed
    LEDGER_JWKS                       the token signing keys: a JWKS file or an https:// URL
    LEDGER_JWT_ISSUER, LEDGER_JWT_AUDIENCE   what tokens' `iss` and `aud` must be
    LEDGER_INSECURE=1                 allow what is missing above, on loopback only
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from ledger.auth.keys import signing_keys
from ledger.auth.verification import TokenVerifier
from ledger.environment import SettingsError

TLS_CERT = "LEDGER_TLS_CERT"
TLS_KEY = "LEDGER_TLS_KEY"
TLS_CLIENT_CA = "LEDGER_TLS_CLIENT_CA"
JWKS = "LEDGER_JWKS"
JWT_ISSUER = "LEDGER_JWT_ISSUER"
JWT_AUDIENCE = "LEDGER_JWT_AUDIENCE"
INSECURE = "LEDGER_INSECURE"

_TRUE = {"1", "true", "yes"}


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """What `LedgerServer` needs: None for either part means that part is off (insecure)."""

    credentials: grpc.ServerCredentials | None = None
    verifier: TokenVerifier | None = None
    mutual_tls: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], listen: str, listen_variable: str) -> ServerSecurity:
        """Raises SettingsError, naming the variables to set, for an unsafe or broken setup."""
        value = {name: (env.get(name) or "").strip() for name in _ALL}
        insecure = value[INSECURE].lower() in _TRUE
        if value[INSECURE] and not insecure and value[INSECURE] not in {"0", "false", "no"}:
            raise SettingsError(f"{INSECURE} must be 1 or 0, got {value[INSECURE]!r}")
        missing = []
        if not (value[TLS_CERT] or value[TLS_KEY]):
            missing.append(f"TLS ({TLS_CERT}, {TLS_KEY})")
        if not value[JWKS]:
            missing.append(f"authentication ({JWKS}, {JWT_ISSUER}, {JWT_AUDIENCE})")
        if missing:
            what = " and ".join(missing)
            if not insecure:
                raise SettingsError(
                    f"no {what} configured: set those variables, or set {INSECURE}=1 to serve "
                    "without them on a loopback address (development only)"
                )
            if not is_loopback(listen):
                raise SettingsError(
                    f"{INSECURE}=1 serves without {what}, which is allowed on a loopback "
                    f"address only, not on {listen!r}: set {listen_variable} to "
                    f"127.0.0.1:<port>, or configure {what}"
                )
        return cls(
            credentials=_credentials(value),
            verifier=_verifier(value),
            mutual_tls=bool(value[TLS_CLIENT_CA]),
        )


_ALL = (TLS_CERT, TLS_KEY, TLS_CLIENT_CA, JWKS, JWT_ISSUER, JWT_AUDIENCE, INSECURE)


def _pem(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _credentials(value: Mapping[str, str]) -> grpc.ServerCredentials | None:
    cert, key, client_ca = value[TLS_CERT], value[TLS_KEY], value[TLS_CLIENT_CA]
    if not (cert or key):
        if client_ca:
            raise SettingsError(f"{TLS_CLIENT_CA} needs {TLS_CERT} and {TLS_KEY} too")
        return None
    if not (cert and key):
        raise SettingsError(f"{TLS_CERT} and {TLS_KEY} go together: set both")
    pair = (_pem(TLS_KEY, key), _pem(TLS_CERT, cert))
    if client_ca:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_pem(TLS_CLIENT_CA, client_ca), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])


def _verifier(value: Mapping[str, str]) -> TokenVerifier | None:
    if not value[JWKS]:
        return None
    if not (value[JWT_ISSUER] and value[JWT_AUDIENCE]):
        raise SettingsError(f"{JWKS} needs {JWT_ISSUER} and {JWT_AUDIENCE} too")
    try:
        keys = signing_keys(value[JWKS])
    except ValueError as exc:
        raise SettingsError(f"{JWKS}: {exc}") from None
    return TokenVerifier(keys, value[JWT_ISSUER], value[JWT_AUDIENCE])


def is_loopback(listen: str) -> bool:
    """Whether `listen` (host:port, [v6]:port or unix:path) is reachable from this machine only."""
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface
