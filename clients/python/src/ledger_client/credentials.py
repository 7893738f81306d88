"""Channels to the Ledger's servers: TLS, and a bearer token on every call."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import grpc


class TokenFile(grpc.AuthMetadataPlugin):
    """`authorization: Bearer <the file's token>`, read again whenever the file changes: tokens
    expire, and whatever renews them (a sidecar, a cron job) rewrites the file, so a long-lived
    client must not keep the token it started with."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self.token()  # a missing or unreadable file fails at once, not at the first call

    def token(self) -> str:
        stat = os.stat(self._path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._token, self._stamp = self._path.read_text().strip(), stamp
            return self._token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            token = self.token()
        except OSError as error:
            callback((), error)  # the call fails UNAVAILABLE, saying why
            return
        callback((("authorization", f"Bearer {token}"),), None)


def secure_channel(
    address: str,
    *,
    ca_file: str | Path | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
) -> grpc.Channel:
    """A TLS channel trusting `ca_file` (default: the system's roots) that sends
    `authorization: Bearer` with `token`, or with the token in `token_file` as it is at each
    call, on every call. gRPC sends such credentials over TLS only."""
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    roots = Path(ca_file).read_bytes() if ca_file is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    if token_file is not None:
        call = grpc.metadata_call_credentials(TokenFile(token_file), name="ledger token file")
        credentials = grpc.composite_channel_credentials(credentials, call)
    elif token:
        call = grpc.access_token_call_credentials(token)
        credentials = grpc.composite_channel_credentials(credentials, call)
    return grpc.secure_channel(address, credentials)
