"""Where the other command-server shards listen, and how this one reaches them: read once from
the environment with the rest of the command server's settings.

    LEDGER_COMMAND_PEERS        every shard's address, comma-separated, in shard-index order
                                (this shard's own entry is not dialled); unset: no forwarding
    LEDGER_COMMAND_PEERS_CA     the CA that signed the shards' certificates (the one clients
                                trust); required when the server serves TLS
    LEDGER_FORWARD_MAX_IN_FLIGHT  forwarded calls in flight at once; past it RESOURCE_EXHAUSTED
    LEDGER_FORWARD_TIMEOUT_SECONDS  a forwarded call's deadline when its caller set none
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.auth.settings import TLS_CERT, TLS_CLIENT_CA, TLS_KEY, is_loopback
from ledger.environment import SettingsError, env_int, env_seconds

PEERS = "LEDGER_COMMAND_PEERS"
PEERS_CA = "LEDGER_COMMAND_PEERS_CA"


@dataclass(frozen=True, slots=True)
class Peers:
    """The shards' addresses (index i: shard i), and what a forwarded call may hold and take."""

    addresses: tuple[str, ...] = ()
    # The CA to trust, or None: plaintext (loopback only, like LEDGER_INSECURE).
    ca_file: str | None = None
    # With mutual TLS (LEDGER_TLS_CLIENT_CA) a shard presents its own certificate to its peers.
    client_cert_file: str | None = None
    client_key_file: str | None = None
    # A forward is one call on a peer's channel: this many at once, like the command queue's
    # bound, keep a slow peer from holding every caller of this shard.
    max_in_flight: int = 1000
    # The caller's remaining deadline is passed on; a caller without one still gets an answer
    # (or DEADLINE_EXCEEDED) within this.
    timeout_seconds: float = 30.0

    @property
    def forwarding(self) -> bool:
        return bool(self.addresses)


def peers_from_env(env: Mapping[str, str], shard_count: int) -> Peers:
    """Raises SettingsError, naming the variable, for a list that does not fit the shard count
    or a channel that would be less protected than the server's own port."""
    defaults = Peers()
    raw = (env.get(PEERS) or "").strip()
    addresses = tuple(a.strip() for a in raw.split(",")) if raw else ()
    if addresses and len(addresses) != shard_count:
        raise SettingsError(
            f"{PEERS} lists {len(addresses)} addresses but LEDGER_SHARD_COUNT is {shard_count}: "
            "give every shard's address, in shard-index order (this shard's own included)"
        )
    if any(not a for a in addresses):
        raise SettingsError(f"{PEERS} has an empty address: {raw!r}")
    tls = bool((env.get(TLS_CERT) or "").strip())
    ca_file = (env.get(PEERS_CA) or "").strip() or None
    if addresses and tls and ca_file is None:
        raise SettingsError(
            f"{PEERS} needs {PEERS_CA} (the CA that signed the shards' certificates) when the "
            f"server serves TLS ({TLS_CERT}): forwarded calls carry the callers' tokens"
        )
    if addresses and not tls:
        remote = [a for a in addresses if not is_loopback(a)]
        if remote:
            raise SettingsError(
                f"{PEERS}: without TLS ({TLS_CERT}) forwarded calls, and the tokens they carry, "
                f"would cross the network in plaintext; {remote} are not loopback addresses"
            )
    if addresses and ca_file is not None and not os.access(ca_file, os.R_OK):
        raise SettingsError(f"{PEERS_CA}: cannot read {ca_file}")
    timeout = env_seconds(env, "LEDGER_FORWARD_TIMEOUT_SECONDS", defaults.timeout_seconds)
    if timeout <= 0:
        raise SettingsError(f"LEDGER_FORWARD_TIMEOUT_SECONDS must be above 0, got {timeout}")
    mutual = addresses and tls and bool((env.get(TLS_CLIENT_CA) or "").strip())
    return Peers(
        addresses=addresses,
        ca_file=ca_file if tls else None,
        client_cert_file=env.get(TLS_CERT) if mutual else None,
        client_key_file=env.get(TLS_KEY) if mutual else None,
        max_in_flight=env_int(
            env, "LEDGER_FORWARD_MAX_IN_FLIGHT", defaults.max_in_flight, minimum=1
        ),
        timeout_seconds=timeout,
    )
