"""The local stack's gRPC credentials: a CA, the servers' certificate, the token signing key and
ready tokens (`ledger.auth.local`), kept in `<data dir>/credentials/` and reused across starts."""

from __future__ import annotations

from pathlib import Path

import grpc

from ledger.auth.local import LocalCredentials, ensure_local_credentials


def local_credentials(data_dir: Path) -> LocalCredentials:
    """`data_dir`/credentials, made on first use (`make run`: .data/credentials/)."""
    return ensure_local_credentials(data_dir / "credentials")


def channel_credentials(
    credentials: LocalCredentials, token: str | None = None
) -> grpc.ChannelCredentials:
    """TLS trusting the local CA, with `token` (if any) sent as `authorization: Bearer` on
    every call."""
    tls = grpc.ssl_channel_credentials(root_certificates=credentials.ca.read_bytes())
    if token is None:
        return tls
    return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
