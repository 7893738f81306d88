"""What one gRPC server takes from its clients at most: message sizes, calls, streams, pings,
connection lifetimes. Both servers read the same variables (README, "Configuration").

Past a limit gRPC answers by itself: RESOURCE_EXHAUSTED for an oversized message or for a call
past `max_concurrent_calls` ("Concurrent RPC limit exceeded!"); streams past a connection's
`max_streams_per_connection` wait in the client until one ends; a client that pings more often
than allowed is sent GOAWAY ("too_many_pings"). A connection older than `max_connection_age_seconds`
is told to reconnect, and its calls still running after the grace end with UNAVAILABLE: a
WatchAccount stream then reconnects and, as always, gets the account's current state first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.environment import SettingsError, env_int, env_seconds

_KIB = 1024
_MIB = 1024 * _KIB


@dataclass(frozen=True, slots=True)
class ServerLimits:
    # Every Ledger request but a batch is a few hundred bytes; 256 KiB leaves room for any sane
    # one and refuses a hostile one before it is parsed (the command server raises it for
    # ExecuteBatch: command_server/settings.py).
    max_receive_bytes: int = 256 * _KIB
    # gRPC's own default: a page of the largest size allowed fits many times over.
    max_send_bytes: int = 4 * _MIB
    # Calls in progress at once (streams included); past it RESOURCE_EXHAUSTED at once. Above
    # the command queue's and the query caps so that those answer first, with their reasons.
    max_concurrent_calls: int = 10_000
    # Bounds what one connection can hold; our own load tools use a few hundred per connection.
    max_streams_per_connection: int = 1000
    # Ping each connection after a minute without traffic: finds peers gone without a FIN
    # (a crashed client, a NAT that forgot us) long before TCP would (2 hours).
    keepalive_seconds: float = 60.0
    keepalive_timeout_seconds: float = 20.0
    # Clients may ping every 10 s (even without calls, to keep WatchAccount's path alive
    # through proxies); pinging more often counts as a strike.
    min_client_ping_seconds: float = 10.0
    # Strikes tolerated before the connection is closed with GOAWAY (gRPC's default).
    max_ping_strikes: int = 2
    # Connections are recycled so that clients spread over new workers and instances after a
    # scale-up; 0: never. The grace lets calls in flight finish, streams end after it.
    max_connection_age_seconds: float = 1800.0
    max_connection_age_grace_seconds: float = 30.0
    # A connection without calls for this long is closed (the client reconnects on its next
    # call); 0: never.
    max_connection_idle_seconds: float = 300.0

    def options(self) -> tuple[tuple[str, Any], ...]:
        """The grpc.aio server options (channel arguments) that apply these limits."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_receive_bytes),
            ("grpc.max_send_message_length", self.max_send_bytes),
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_seconds)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout_seconds)),
            # The server keeps pinging an idle connection (its default stops after two pings).
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_client_ping_seconds)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
        ]
        if self.max_connection_age_seconds > 0:
            options += [
                ("grpc.max_connection_age_ms", _ms(self.max_connection_age_seconds)),
                ("grpc.max_connection_age_grace_ms", _ms(self.max_connection_age_grace_seconds)),
            ]
        if self.max_connection_idle_seconds > 0:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle_seconds)))
        return tuple(options)


def server_limits(env: Mapping[str, str], defaults: ServerLimits | None = None) -> ServerLimits:
    """The limits from the LEDGER_GRPC_* variables, each defaulting to `defaults`' (a server's
    own, e.g. the command server's larger receive limit; otherwise `ServerLimits()`'s)."""
    d = defaults or ServerLimits()
    return ServerLimits(
        max_receive_bytes=env_int(
            env, "LEDGER_GRPC_MAX_RECEIVE_BYTES", d.max_receive_bytes, minimum=1024
        ),
        max_send_bytes=env_int(env, "LEDGER_GRPC_MAX_SEND_BYTES", d.max_send_bytes, minimum=1024),
        max_concurrent_calls=env_int(
            env, "LEDGER_GRPC_MAX_CONCURRENT_CALLS", d.max_concurrent_calls, minimum=1
        ),
        max_streams_per_connection=env_int(
            env, "LEDGER_GRPC_MAX_STREAMS_PER_CONNECTION", d.max_streams_per_connection, minimum=1
        ),
        keepalive_seconds=_positive(env, "LEDGER_GRPC_KEEPALIVE_SECONDS", d.keepalive_seconds),
        keepalive_timeout_seconds=_positive(
            env, "LEDGER_GRPC_KEEPALIVE_TIMEOUT_SECONDS", d.keepalive_timeout_seconds
        ),
        min_client_ping_seconds=env_seconds(
            env, "LEDGER_GRPC_MIN_CLIENT_PING_SECONDS", d.min_client_ping_seconds
        ),
        max_ping_strikes=env_int(env, "LEDGER_GRPC_MAX_PING_STRIKES", d.max_ping_strikes),
        max_connection_age_seconds=env_seconds(
            env, "LEDGER_GRPC_MAX_CONNECTION_AGE_SECONDS", d.max_connection_age_seconds
        ),
        max_connection_age_grace_seconds=env_seconds(
            env, "LEDGER_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS", d.max_connection_age_grace_seconds
        ),
        max_connection_idle_seconds=env_seconds(
            env, "LEDGER_GRPC_MAX_CONNECTION_IDLE_SECONDS", d.max_connection_idle_seconds
        ),
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    # A keepalive of 0 would make gRPC ping without pause.
    seconds = env_seconds(env, name, default)
    if seconds <= 0:
        raise SettingsError(f"{name} must be more than 0 seconds, got {seconds}")
    return seconds


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
