"""Channels to the Ledger's servers: TLS, and a bearer token on every call."""

from __future__ import annotations

from pathlib import Path

import grpc


def secure_channel(
    address: str,
    *,
    ca_file: str | Path | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
) -> grpc.Channel:
    """A TLS channel trusting `ca_file` (default: the system's roots) that sends
    `authorization: Bearer <token>` on every call; gRPC sends such tokens over TLS only."""
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        token = Path(token_file).read_text().strip()
    roots = Path(ca_file).read_bytes() if ca_file is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(address, credentials)
