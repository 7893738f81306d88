"""`python bench/decide_costs.py`: CPU per command of the writer's deciding of a
batch (`Decider.decide`: the outcome lookup, deciding, evolving, the pending state), for
batches of 1,000 Deposits, Withdrawals and Transfers over 10,000 funded accounts.

CPU time of this process, the best of 15 batches, in microseconds per command. Run as a file,
it measures whichever tree comes first on the path, as `bench/batch_path_costs.py` does:
`PYTHONPATH=<a tree> python bench/decide_costs.py` (docs/performance.md, "Deciding a command
for less").
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime

from command_server.shards import Shard
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.deciding import Submission
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, replay

ACCOUNTS = 10_000
BATCH = 1_000


def _batcher() -> Batcher:
    """A batcher over 10,000 open accounts holding 1,000,000.00 USD each."""
    shard = Shard(0, 1, 6)
    model = WriteModel(1_000_000, shard.owned_partitions)
    now = datetime.now(UTC)
    for number in range(ACCOUNTS):
        account_id = f"cost-{number}"
        opening = OpenAccount(new_command_id(), account_id, "USD", "cost")
        funding = Deposit(new_command_id(), account_id, "1000000.00")
        opened = decide(opening, {}, now)
        funded = decide(funding, replay(opened), now)
        for offset, event in enumerate(opened + funded):
            model.apply(event, shard.partition_of(account_id), 2 * number + offset)
    # A store is only needed to append, and deciding appends nothing.
    return Batcher(model, None, shard)  # type: ignore[arg-type]


def _command(kind: str, rng: random.Random) -> Command:
    account_id, other = (f"cost-{n}" for n in rng.sample(range(ACCOUNTS), 2))
    if kind == "deposit":
        return Deposit(new_command_id(), account_id, "1.00")
    if kind == "withdraw":
        return Withdraw(new_command_id(), account_id, "0.01")
    return Transfer(new_command_id(), account_id, other, "0.50")


def measure(batches: int) -> dict[str, float]:
    """The best (least) CPU µs per command of deciding a batch of each kind."""
    batcher = _batcher()
    rng = random.Random(1)
    best: dict[str, float] = {}
    for kind in ("deposit", "withdraw", "transfer"):
        for _ in range(batches):
            batch = [Submission(_command(kind, rng)) for _ in range(BATCH)]
            started = time.process_time()
            decisions = batcher.decider.decide(batch, {})
            spent = (time.process_time() - started) * 1e6 / BATCH
            assert all(verdict is None for verdict in decisions.verdicts), "a command failed"
            best[kind] = min(best.get(kind, spent), spent)
    return best


def main() -> int:
    for kind, us in measure(batches=15).items():
        print(f"{kind:10} {us:6.2f} µs/command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
