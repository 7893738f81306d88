"""The command server's configuration, read once from the environment by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from command_server.outcome_log import CHUNK_ENTRIES
from command_server.peers import Peers, peers_from_env
from ledger.environment import (
    LOCAL_KAFKA_BOOTSTRAP,
    SettingsError,
    env_int,
    env_seconds,
    env_text,
)
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC
from ledger.kafka_security import KafkaSecurity, kafka_security
from ledger.registry_access import RegistryAccess, registry_access
from ledger.server_limits import ServerLimits, server_limits

EVENT_TOPIC = ACCOUNT_EVENTS_TOPIC
MAX_PRODUCERS = 4
MAX_RECEIVE_BYTES = 8 * 1024 * 1024
"""The command server's default LEDGER_GRPC_MAX_RECEIVE_BYTES: an ExecuteBatch of 8,000 of the
largest valid commands (an OpenAccount whose owner is 200 four-byte characters: about 920 bytes
encoded) is 7.4 MB (tests/unit/test_batch_limits.py); the other calls stay far below it."""


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = LOCAL_KAFKA_BOOTSTRAP
    kafka_security: KafkaSecurity = KafkaSecurity()  # noqa: RUF009 (frozen, so safe to share)
    registry: RegistryAccess = RegistryAccess()  # noqa: RUF009 (frozen, so safe to share)
    listen: str = "127.0.0.1:50051"
    topic: str = EVENT_TOPIC
    partitions: int = 6
    shard_index: int = 0
    shard_count: int = 1
    # Group commit: a batch closes when it holds this many commands or has waited this long.
    batch_max_commands: int = 1000
    batch_max_wait_ms: int = 0
    # Once this many commands wait, they go into the pipe while the writer has a batch: it
    # decides them while that batch's transaction commits (at most two batches in the pipe).
    # Lower sends more, smaller transactions (docs/performance.md, "Deciding the next batch").
    batch_ahead_commands: int = 1000
    # Commands waiting for a batch at most; past it a command is refused (RESOURCE_EXHAUSTED)
    # instead of piling up in memory while Kafka is slow or gone. Default: 4 batches' worth.
    queue_max_commands: int = 4 * 1000
    # When a refused command's client is told to retry (grpc-retry-pushback-ms): about a few
    # commits' time, long enough for the queue to drain a batch or two.
    queue_retry_after_ms: int = 1000
    # How many command ids (most recent first) are remembered for idempotent retries.
    dedupe_window: int = 1_000_000
    # Outcomes beyond the window are forgotten (and snapshotted) this many at a time.
    dedupe_chunk_entries: int = CHUNK_ENTRIES
    # How far ahead of the server's clock a command id's time may be (docs/design.md, decision 4).
    command_id_max_skew_seconds: float = 60.0
    # A snapshot of the write model every this many events (0: never), so that a restart
    # replays only the events after it.
    snapshot_every_events: int = 10_000
    # And at most one per this many seconds: under load a snapshot then costs per second, not per
    # event, and a crash replays this long's events more (docs/performance.md, "Snapshots").
    snapshot_min_seconds: float = 2.0
    # Transactional producers taking turns for events (see EventStore); 1: the shard's own id
    # only, each transaction then waiting out the previous one's markers.
    producers: int = 2
    # The least replication the event topic may have (and what topics are created with): the
    # defaults fit a one-broker stack; production wants 3 and 2 (README, "Configuration").
    min_replication_factor: int = 1
    min_insync_replicas: int = 1
    grace_seconds: float = 10.0
    # How long a cross-shard Transfer call waits for the credit (or refusal) at most, and how
    # many calls may wait at once; past either the call answers PENDING (decision 13).
    transfer_wait_seconds: float = 5.0
    transfer_waiters_max: int = 10_000
    # The file holding the key that wraps every account's data key (ledger/personal_data.py).
    key_encryption_key_file: str | None = None
    server_limits: ServerLimits = ServerLimits(max_receive_bytes=MAX_RECEIVE_BYTES)  # noqa: RUF009
    # The other shards, to forward commands they own to (command_server/forwarding.py).
    peers: Peers = Peers()  # noqa: RUF009 (frozen, so safe to share)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        batch_max_commands = env_int(
            env, "LEDGER_BATCH_MAX_COMMANDS", defaults.batch_max_commands, minimum=1
        )
        shard_count = env_int(env, "LEDGER_SHARD_COUNT", defaults.shard_count, minimum=1)
        settings = cls(
            kafka_bootstrap=env_text(
                env, "LEDGER_KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap
            ),
            # LEDGER_KAFKA_SECURITY_PROTOCOL, LEDGER_KAFKA_SASL_*, LEDGER_KAFKA_SSL_*,
            # LEDGER_KAFKA_CONFIG_FILE
            kafka_security=kafka_security(env),
            # LEDGER_SCHEMA_REGISTRY_URL, LEDGER_SCHEMA_REGISTRY_CA,
            # LEDGER_SCHEMA_REGISTRY_USER_INFO(_FILE)
            registry=registry_access(env),
            listen=env_text(env, "LEDGER_COMMAND_ADDR", defaults.listen),
            topic=env_text(env, "LEDGER_TOPIC", defaults.topic),
            partitions=env_int(env, "LEDGER_PARTITIONS", defaults.partitions, minimum=1),
            shard_index=env_int(env, "LEDGER_SHARD_INDEX", defaults.shard_index),
            shard_count=shard_count,
            batch_max_commands=batch_max_commands,
            batch_max_wait_ms=env_int(env, "LEDGER_BATCH_MAX_WAIT_MS", defaults.batch_max_wait_ms),
            batch_ahead_commands=env_int(
                env, "LEDGER_BATCH_AHEAD_COMMANDS", batch_max_commands, minimum=1
            ),
            queue_max_commands=env_int(
                env, "LEDGER_COMMAND_QUEUE_MAX", 4 * batch_max_commands, minimum=1
            ),
            queue_retry_after_ms=env_int(
                env, "LEDGER_COMMAND_RETRY_AFTER_MS", defaults.queue_retry_after_ms, minimum=1
            ),
            dedupe_window=env_int(env, "LEDGER_DEDUPE_WINDOW", defaults.dedupe_window, minimum=1),
            dedupe_chunk_entries=env_int(
                env, "LEDGER_DEDUPE_CHUNK_ENTRIES", defaults.dedupe_chunk_entries, minimum=1
            ),
            command_id_max_skew_seconds=env_seconds(
                env, "LEDGER_COMMAND_ID_MAX_SKEW_SECONDS", defaults.command_id_max_skew_seconds
            ),
            snapshot_every_events=env_int(
                env, "LEDGER_SNAPSHOT_EVERY_EVENTS", defaults.snapshot_every_events
            ),
            snapshot_min_seconds=env_seconds(
                env, "LEDGER_SNAPSHOT_MIN_SECONDS", defaults.snapshot_min_seconds
            ),
            # Transactions never overlap, so more producers would only wait their turn.
            producers=env_int(
                env, "LEDGER_PRODUCERS", defaults.producers, minimum=1, maximum=MAX_PRODUCERS
            ),
            min_replication_factor=env_int(
                env, "LEDGER_MIN_REPLICATION_FACTOR", defaults.min_replication_factor, minimum=1
            ),
            min_insync_replicas=env_int(
                env, "LEDGER_MIN_INSYNC_REPLICAS", defaults.min_insync_replicas, minimum=1
            ),
            transfer_wait_seconds=env_seconds(
                env, "LEDGER_TRANSFER_WAIT_SECONDS", defaults.transfer_wait_seconds
            ),
            transfer_waiters_max=env_int(
                env, "LEDGER_TRANSFER_WAITERS_MAX", defaults.transfer_waiters_max, minimum=0
            ),
            key_encryption_key_file=env.get("LEDGER_KEY_ENCRYPTION_KEY_FILE") or None,
            # LEDGER_GRPC_*
            server_limits=server_limits(env, defaults.server_limits),
            # LEDGER_COMMAND_PEERS, LEDGER_COMMAND_PEERS_CA, LEDGER_FORWARD_*
            peers=peers_from_env(env, shard_count),
        )
        if settings.shard_index >= settings.shard_count:
            raise SettingsError(
                f"LEDGER_SHARD_INDEX ({settings.shard_index}) must be below "
                f"LEDGER_SHARD_COUNT ({settings.shard_count})"
            )
        return settings

    @property
    def transactional_id(self) -> str:
        # Stable across restarts so that a new process fences its predecessor
        # (docs/design.md, decision 2).
        return _shard_id(self.topic, self.shard_index, self.shard_count)

    @property
    def transactional_ids(self) -> tuple[str, ...]:
        """The ids of the shard's producers, which take turns (see EventStore); the first is the
        shard's own id, the others derive from it (and are just as stable)."""
        first = self.transactional_id
        return (first, *(f"{first}.{n}" for n in range(1, self.producers)))

    def fencing_ids(self, partitions: int) -> tuple[str, ...]:
        """Every transactional id that could write one of this shard's partitions, under any
        shard count up to `partitions` and any producer count (README, "Transactional ids"):
        fencing them all at start leaves no other writer of those partitions, whatever
        configuration a zombie still runs with. Siblings of the current shard count are never
        among them (they own other partitions)."""
        owned = [p for p in range(partitions) if p % self.shard_count == self.shard_index]
        ids: list[str] = []
        for count in range(1, partitions + 1):
            for index in sorted({p % count for p in owned}):
                first = _shard_id(self.topic, index, count)
                ids += [first, *(f"{first}.{n}" for n in range(1, MAX_PRODUCERS))]
        return tuple(ids)

    @property
    def snapshot_transactional_id(self) -> str:
        """The id of the producer that writes the shard's snapshots."""
        return f"{self.transactional_id}.snapshots"


def _shard_id(topic: str, index: int, count: int) -> str:
    shard = f"{index}-of-{count}"
    if topic == EVENT_TOPIC:
        return f"ledger-command-{shard}"
    # Another ledger on the same cluster (a staging topic, a benchmark) must not fence ours.
    return f"ledger-command-{topic}-{shard}"
