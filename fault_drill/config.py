"""How big a drill is: the test suite's size and the soak's, and every knob in between."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

COMMAND_SERVER = "command_server"
PROJECTOR = "projector"
QUERY_SERVER = "query_server"
KAFKA = "kafka"
POSTGRES = "postgres"

COMPONENTS = (COMMAND_SERVER, PROJECTOR, QUERY_SERVER, KAFKA, POSTGRES)
"""Everything the drill kills, in the order the figures list them."""

# Fault kinds besides a SIGKILL and restart of a component (whose kind is its name).
TAKEOVER = "command_server_takeover"
"""A second instance of the command server's shard starts while the first runs: it fences the
first, which must stop (exit code 3); every other time the first is paused (SIGSTOP) meanwhile
and resumed once the newcomer serves, like a zombie that wakes up."""
COMMAND_SERVER_PAUSE = "command_server_pause"
"""SIGSTOP of the command server (and its writer) for a few seconds, then SIGCONT."""
KAFKA_PAUSE = "kafka_pause"
"""SIGSTOP of the Kafka broker for a few seconds, then SIGCONT."""
SNAPSHOT_RESTART = "command_server_snapshot_restart"
"""SIGKILL of the command server once the log holds more than a given number of events; the
restart must restore from a snapshot, not replay the whole log."""

FAULT_KINDS = (*COMPONENTS, TAKEOVER, COMMAND_SERVER_PAUSE, KAFKA_PAUSE, SNAPSHOT_RESTART)
"""Every kind of fault on the one-broker stack, in the order the figures list them."""
LEADER_BROKER = "kafka_leader_broker"
"""On a three-broker cluster only: SIGKILL of the broker leading most of the event topic's
partitions (each time another broker than the time before), restarted after a few seconds in
which the two others must take the writes; over once every replica is back in sync."""
BROKER_FAULT_KINDS = (LEADER_BROKER,)
"""The kinds of a drill on three brokers (`DrillConfig.on_three_brokers`)."""
SHARD_PAIR = "command_server_shard_pair"
"""With three command-server shards only: SIGKILL, at once, of the shard owning a transfer's
debited account and of the shard owning its credited account (another shard when both are the
same), both started again after a moment; the clients enter by a random shard each attempt."""
SHARD_FAULT_KINDS = (SHARD_PAIR,)
"""The kinds of a drill on three shards (`DrillConfig.on_three_shards`)."""
CROSS_SHARD_TRANSFERS = True
"""Whether a three-shard drill's transfers may cross shards (the saga of decision 13): on, so
the pair of shards it kills are in the middle of sagas."""
TARGET = {
    **{name: name for name in COMPONENTS},
    TAKEOVER: COMMAND_SERVER,
    COMMAND_SERVER_PAUSE: COMMAND_SERVER,
    KAFKA_PAUSE: KAFKA,
    SNAPSHOT_RESTART: COMMAND_SERVER,
    LEADER_BROKER: KAFKA,
    SHARD_PAIR: COMMAND_SERVER,
}
"""The component each kind of fault hits."""


def new_seed() -> int:
    return secrets.randbelow(2**31)


@dataclass(frozen=True, slots=True)
class DrillConfig:
    seed: int
    seconds: float = 35.0
    """Minimum duration of the load. The load goes on until every planned kill has happened."""
    min_kills: int = 1
    """Each kind of fault happens at least this many times."""
    extra_kills: bool = False
    """After the planned faults, keep injecting random ones while the load runs."""
    clients: int = 12
    """Concurrent command clients, each with its own channel (and its own accounts)."""
    readers: int = 2
    """Concurrent query clients reading their writes back with consistency tokens."""
    accounts_per_client: int = 4
    """How many open accounts a client keeps (it opens new ones as it closes old ones)."""
    think_time_s: float = 0.01
    """A client waits up to this long (uniformly) between two commands."""
    call_deadline_s: float = 3.0
    """Per-call deadline of an ordinary attempt."""
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    gap_s: tuple[float, float] = (1.0, 4.0)
    """Pause between the moment a fault is over (everything healthy) and the next kill."""
    restart_delay_s: tuple[float, float] = (0.0, 1.0)
    """How long a killed component stays down before the supervisor starts it again."""
    healthy_deadline_s: float = 120.0
    """How long after a kill everything may take to be healthy again before it is a finding."""
    resolve_deadline_s: float = 90.0
    """After the load: how long clients keep retrying commands that have no answer yet."""
    catch_up_deadline_s: float = 120.0
    saga_end_deadline_s: float = 90.0
    """How long a client follows a transfer answered PENDING (GetTransfer) before its accounts
    are uncertain, and how long the drill waits for the log to hold no saga in flight."""
    """After the load: how long the projector may take to reach the end of the log."""
    resend_sample: int = 200
    """After all faults: how many acknowledged commands are sent again (same command_id) to
    check that the rebuilt dedupe memory still answers them with their original result."""
    projector_session_timeout_ms: int = 6000
    """The projector's consumer group session timeout. With librdkafka's default (45 s) a
    projector restarted after SIGKILL waits for its dead predecessor's session to expire
    before it gets its partitions back."""
    partitions: int = 6
    pause_s: tuple[float, float] = (2.0, 5.0)
    """How long a paused (SIGSTOP) component stays paused."""
    fenced_exit_deadline_s: float = 30.0
    """How long a command server fenced by a newcomer may take to exit."""
    snapshot_every_events: int = 500
    """The command server's LEDGER_SNAPSHOT_EVERY_EVENTS."""
    snapshot_restart_min_events: int = 1500
    """A snapshot restart waits until the acknowledged commands have put more than this many
    events in the log."""
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    """The kinds of fault the plan holds, each `min_kills` times."""
    shards: int = 1
    """Command-server shards (`on_three_shards`); shard 0 is the component COMMAND_SERVER."""
    cross_shard_transfers: bool = True
    transfer_wait_s: float | None = None
    """The shards' LEDGER_TRANSFER_WAIT_SECONDS (None: the server's default): how long a
    cross-shard Transfer waits for its end before it answers PENDING. A short wait makes
    most cross-shard transfers answered PENDING, so the clients must follow their sagas."""
    """With several shards: whether a transfer's accounts may be on two shards (otherwise the
    target is one of the source's shard)."""
    broker_down_s: tuple[float, float] = (6.0, 10.0)
    """How long a killed broker of the three stays down: long enough that the controller moves
    its leaderships (broker.session.timeout.ms, 5 s in devstack) and the others take writes."""

    @classmethod
    def test_size(cls, seed: int | None = None) -> DrillConfig:
        """Small enough for the test suite: every component killed once, about 2 minutes
        (the load lasts until the last planned kill is over)."""
        return cls(
            seed=new_seed() if seed is None else seed,
            seconds=30.0,
            gap_s=(0.5, 2.0),
            pause_s=(2.0, 3.0),
        )

    @classmethod
    def soak_size(cls, seed: int | None = None) -> DrillConfig:
        """`--soak`: at least 90 s of load, every kind of fault at least twice (the snapshot
        restarts with more than 10,000 events in the log), plus more random faults while the
        load lasts."""
        return cls(
            seed=new_seed() if seed is None else seed,
            seconds=90.0,
            min_kills=2,
            extra_kills=True,
            clients=16,
            readers=3,
            resend_sample=500,
            snapshot_every_events=2000,
            snapshot_restart_min_events=10_000,
        )

    def on_three_brokers(self) -> DrillConfig:
        """The same size on a three-broker cluster: its leader broker killed, twice (another
        broker the second time)."""
        return replace(self, fault_kinds=BROKER_FAULT_KINDS, min_kills=max(2, self.min_kills))

    def on_three_shards(self, cross_shard_transfers: bool = CROSS_SHARD_TRANSFERS) -> DrillConfig:
        """The same size with three command-server shards: the debiting and the crediting shard
        of a transfer killed at once, twice; cross-shard transfers in the traffic or not."""
        return replace(
            self,
            shards=3,
            cross_shard_transfers=cross_shard_transfers,
            fault_kinds=SHARD_FAULT_KINDS,
            min_kills=max(2, self.min_kills),
        )

    def with_changes(self, **changes: object) -> DrillConfig:
        return replace(self, **changes)  # type: ignore[arg-type]
