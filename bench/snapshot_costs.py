"""`python bench/snapshot_costs.py`: CPU per event folded of the writer's snapshots, in one
process, without Kafka.

10,000 accounts opened over the writer's 6 partitions, then 100,000 Deposits to random accounts
folded into the write model in batches of 1,000, with a snapshot every `--every` events as the
writer takes them: `Snapshots.capture` (the writer's main thread, between two batches) and
`Snapshots.publish` encoding every record (the snapshot thread, which shares the main thread's
interpreter lock; the transaction itself is left out). Deciding and folding are not timed. CPU
time of this process (`time.process_time`), the best of `--runs` runs, in microseconds per
event folded since the snapshot before; and the capture alone per snapshot (the time batches
wait for it), median and slowest over the run's snapshots, in milliseconds.

Run as a file rather than a module, it measures whichever tree's code comes first on the path
(the script's directory starts it, not the working directory, so name the tree measured on
PYTHONPATH, this one's too, or an installed tree is measured):
`git archive <commit> | tar -x -C /tmp/before && PYTHONPATH=/tmp/before python
bench/snapshot_costs.py` measures an older tree with this very script (docs/performance.md,
"Batches (issue 22)", "Snapshots").
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from command_server.outcome_log import CHUNK_ENTRIES
from command_server.shards import Shard
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.write_model import WriteModel
from command_server.writer.protocol import pack_verdict
from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.records import Event

BATCH = 1_000
PARTITIONS = 6
_TARGET = SnapshotTarget("costs.snapshots", "costs", "topic-id", every_events=1)


class _Discard:
    """Stands in for the snapshot producer: takes the encoded records and keeps nothing."""

    def __init__(self) -> None:
        self.bytes = 0

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        self.bytes += sum(len(value) for _, value in records if value is not None)

    def close(self) -> None: ...


def measure(
    accounts: int, deposits: int, every: int, seed: int, chunk_entries: int = CHUNK_ENTRIES
) -> dict[str, float]:
    """CPU µs per event folded of capturing and of encoding, over one run of the history."""
    shard = Shard(0, 1, PARTITIONS)
    model = WriteModel(10 * (accounts + deposits), shard.owned_partitions, chunk_entries)
    store = _Discard()
    snapshots = Snapshots(store, _TARGET)  # type: ignore[arg-type]
    snapshots.restore(model, shard.owned_partitions, {})
    now = datetime(2026, 12, 7, tzinfo=UTC)
    rng = random.Random(seed)
    ids = [f"cost-{n}" for n in range(accounts)]
    offsets = dict.fromkeys(shard.owned_partitions, -1)

    def fold(events: Sequence[Event]) -> None:
        touched: set[int] = set()
        for event in events:
            partition = shard.partition_of(event.account_id)
            offsets[partition] += 1
            model.apply(event, partition, offsets[partition])
            touched.add(partition)
        for command_id in {event.command_id for event in events}:
            # The writer answers every command with its token before a snapshot reads it.
            pack_verdict(model.outcome(command_id))
        for partition in touched:
            # A transaction's marker takes an offset.
            offsets[partition] += 1

    for at in range(0, accounts, BATCH):
        fold(
            [
                decide(OpenAccount(new_command_id(), a, "USD", "c"), {}, now)[0]
                for a in ids[at : at + BATCH]
            ]
        )
    snapshots.write(model)
    captured = encoded = 0.0
    captures: list[float] = []
    since = 0
    for step in range(0, deposits, BATCH):
        now += timedelta(milliseconds=100)
        batch: list[Event] = []
        batch_state: dict[str, Account] = {}
        for n in range(BATCH):
            account_id = rng.choice(ids)
            current = batch_state.get(account_id) or model.accounts[account_id]
            command = Deposit(new_command_id(), account_id, str(1 + (step + n) % 97))
            (event,) = decide(command, {account_id: current}, now)
            batch_state[account_id] = evolve(current, event)
            batch.append(event)
        fold(batch)
        since += BATCH
        if since >= every:
            since = 0
            started = time.process_time()
            capture = snapshots.capture(model)
            middle = time.process_time()
            if capture is not None:
                snapshots.recorded(capture, snapshots.publish(capture))
            ended = time.process_time()
            captured += middle - started
            captures.append(middle - started)
            encoded += ended - middle
    folded = deposits - deposits % every
    return {
        "capture (main thread)": captured * 1e6 / folded,
        "encode (snapshot thread)": encoded * 1e6 / folded,
        "total": (captured + encoded) * 1e6 / folded,
        "MB encoded per 10,000 events": store.bytes / folded * 10_000 / 1e6,
        "capture per snapshot, median": statistics.median(captures) * 1e3,
        "capture per snapshot, slowest": max(captures) * 1e3,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--deposits", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="events between snapshots")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--chunk-entries",
        type=int,
        default=CHUNK_ENTRIES,
        help="entries per outcome chunk (LEDGER_DEDUPE_CHUNK_ENTRIES)",
    )
    args = parser.parse_args(argv)
    runs = [
        measure(args.accounts, args.deposits, args.every, seed, args.chunk_entries)
        for seed in range(args.runs)
    ]
    for name in runs[0]:
        best = min(run[name] for run in runs)
        unit = "" if name.startswith("MB") else " ms" if "per snapshot" in name else " µs/event"
        print(f"{name:30} {best:8.2f}{unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
