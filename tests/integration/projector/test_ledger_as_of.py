"""The whole ledger as of any instant: ListBalancesAt and GetTrialBalance read from the live
projector's read model, and `rebuild --until` building it into a schema of its own, each equal
to a fold of the log cut at the instant (events at that very millisecond included)."""

import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import projector as projector_package
from devstack.ledger_services import LedgerService
from devstack.process import clean_environment
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.money import format_amount
from ledger.domain.rejection import Rejection
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
)
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from projector.projection import to_minor
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog

pytestmark = pytest.mark.integration

_CURRENCIES = ("USD", "EUR", "JPY", "KWD")
# Time between one command and the next: often none at all (several transactions in one
# millisecond), then every width of currency_totals (second, minute, day) and more.
_STEPS = (
    (timedelta(0), 0.35),
    (timedelta(milliseconds=1), 0.10),
    (timedelta(milliseconds=300), 0.15),
    (timedelta(seconds=1), 0.14),
    (timedelta(seconds=7), 0.10),
    (timedelta(seconds=61), 0.12),
    (timedelta(minutes=13), 0.035),
    (timedelta(hours=3), 0.005),
)


class Ledger:
    """A history of 100 accounts decided by the domain, at chosen (whole-millisecond) times."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # Starts just before a UTC midnight a day ago, so that the history spans days.
        self.now = today - timedelta(days=1, seconds=90)
        self.latest = datetime.now(UTC) - timedelta(minutes=1)
        self.accounts: dict[str, Account] = {}
        self.open_ids: list[str] = []

    def decide(self, command: Command) -> list[Event]:
        try:
            events = decide(command, self.accounts, self.now)
        except Rejection:
            return []
        for event in events:
            self.accounts[event.account_id] = evolve(self.accounts.get(event.account_id), event)
        return events

    def step(self) -> None:
        steps, weights = zip(*_STEPS, strict=True)
        self.now = min(self.now + self.random.choices(steps, weights)[0], self.latest)

    def generate(self, accounts: int, commands: int) -> list[Event]:
        events: list[Event] = []
        to_open = [f"asof-{n:03d}" for n in range(accounts)]
        for account_id in to_open[: accounts // 2]:
            events += self._open(account_id)
        pending = to_open[accounts // 2 :]
        for _ in range(commands):
            self.step()
            roll = self.random.random()
            if pending and roll < 0.06:
                events += self._open(pending.pop())
            elif roll < 0.075 and len(self.open_ids) > 20:
                events += self._close(self.random.choice(self.open_ids))
            else:
                events += self.decide(self.movement())
        for account_id in pending:
            self.step()
            events += self._open(account_id)
        return events

    def _open(self, account_id: str) -> list[Event]:
        currency = _CURRENCIES[int(account_id[-3:]) % len(_CURRENCIES)]
        self.open_ids.append(account_id)
        return self.decide(OpenAccount(new_command_id(), account_id, currency, "owner"))

    def _close(self, account_id: str) -> list[Event]:
        self.open_ids.remove(account_id)
        account = self.accounts[account_id]
        events = []
        if account.balance:
            everything = format_amount(account.balance, account.currency)
            events += self.decide(Withdraw(new_command_id(), account_id, everything))
        return events + self.decide(CloseAccount(new_command_id(), account_id))

    def movement(self) -> Command:
        account_id = self.random.choice(self.open_ids)
        amount = str(self.random.randint(1, 400))
        roll = self.random.random()
        if roll < 0.45:
            return Deposit(new_command_id(), account_id, amount)
        if roll < 0.7:
            return Withdraw(new_command_id(), account_id, amount)
        return Transfer(new_command_id(), account_id, self.random.choice(self.open_ids), amount)


@dataclass(frozen=True)
class AsOf:
    """What the log says about one instant."""

    balances: list[tuple[str, str, str, int, int]]
    """(account id, currency, status, balance in minor units, version), by account id."""
    totals: dict[str, tuple[int, int, int, int, int]]
    """Per currency: accounts opened, closed, money in, out (minor units), movements."""


def fold_until(events: Sequence[Event], at: datetime) -> AsOf:
    accounts: dict[str, Account] = {}
    totals: dict[str, list[int]] = {}
    for event in events:  # each account's events are in log order
        if event.occurred_at > at:
            continue
        account = evolve(accounts.get(event.account_id), event)
        accounts[event.account_id] = account
        sums = totals.setdefault(account.currency, [0, 0, 0, 0, 0])
        if isinstance(event, AccountOpened):
            sums[0] += 1
        elif isinstance(event, AccountClosed):
            sums[1] += 1
        elif isinstance(event, MoneyDeposited | TransferCredited):
            sums[2] += event.amount
            sums[4] += 1
        elif isinstance(event, MoneyWithdrawn | TransferDebited):
            sums[3] += event.amount
            sums[4] += 1
    return AsOf(
        [
            (a.account_id, a.currency, a.status.name, a.balance, a.version)
            for a in sorted(accounts.values(), key=lambda a: a.account_id)
        ],
        {currency: (o, c, i, out, m) for currency, (o, c, i, out, m) in totals.items()},
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def listed(client: Any, at: datetime, page_size: int, prefix: str = "") -> list[Any]:
    balances: list[Any] = []
    token = ""
    while True:
        page = await client.ListBalancesAt(
            pb.ListBalancesAtRequest(
                at=_timestamp(at), account_id_prefix=prefix, page_size=page_size, page_token=token
            )
        )
        assert len(page.balances) <= page_size
        balances += page.balances
        token = page.next_page_token
        if not token:
            return balances


def _as_listed(balance: Any) -> tuple[str, str, str, int, int]:
    status = pb.AccountStatus.Name(balance.status).removeprefix("ACCOUNT_STATUS_")
    minor = to_minor(Decimal(balance.balance), balance.currency)
    return (balance.account_id, balance.currency, status, minor, balance.version)


def _as_totals(totals: Any) -> tuple[int, int, int, int, int]:
    money_in = to_minor(Decimal(totals.money_in), totals.currency)
    money_out = to_minor(Decimal(totals.money_out), totals.currency)
    assert to_minor(Decimal(totals.total_balance), totals.currency) == money_in - money_out
    counts = (totals.account_count, totals.closed_account_count)
    return (*counts, money_in, money_out, totals.movement_count)


def crowded_times(events: Sequence[Event]) -> list[datetime]:
    """The milliseconds that more than two events share (several transactions), in order."""
    counts = Counter(event.occurred_at for event in events)
    return sorted(moment for moment, count in counts.items() if count > 2)


def instants(events: Sequence[Event], rng: random.Random) -> list[datetime]:
    """20 instants: exact event times (where several transactions share the millisecond),
    a microsecond before some, and before the first and after the last event."""
    times = sorted({event.occurred_at for event in events})
    chosen = rng.sample(crowded_times(events), 6) + rng.sample(times, 8)
    chosen += [t - timedelta(microseconds=1) for t in rng.sample(times, 4)]
    return [times[0] - timedelta(seconds=1), *chosen, times[-1] + timedelta(days=1)]


_MIGRATION = "0003_ledger_totals_by_period.sql"


async def _projected(log: EventLog, events: list[Event], db: Any, projector: LedgerService) -> None:
    """`events` in the log and projected by `projector` into the read model `db` reads."""
    # Many small transactions, so that the projector's batches split the history anywhere.
    log.write(events, per_transaction=97)
    projector.start()
    await checks.caught_up(db, log.topic, log.last_offsets())


async def test_balances_and_trial_balance_at_20_instants_equal_the_fold_of_the_log(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
    tmp_path: Path,
) -> None:
    ledger = Ledger(seed=23)
    events = ledger.generate(accounts=100, commands=1200)
    await _projected(EventLog(stack, topic, partitions=3), events, db, projectors())
    query_server = LedgerService.query_server(stack, tmp_path, topic=topic, database_url=database)
    query_server.start()
    try:
        async with grpc.aio.insecure_channel(query_server.address) as channel:
            client = pb_grpc.QueryServiceStub(channel)
            rng = random.Random(5)
            for at in instants(events, rng):
                expected = fold_until(events, at)
                page_size = rng.choice([7, 30, 500])
                got = [_as_listed(b) for b in await listed(client, at, page_size)]
                assert got == expected.balances, f"ListBalancesAt at {at.isoformat()}"
                trial = await client.GetTrialBalance(pb.GetTrialBalanceRequest(at=_timestamp(at)))
                assert [t.currency for t in trial.currencies] == sorted(expected.totals)
                assert {t.currency: _as_totals(t) for t in trial.currencies} == expected.totals
            at = events[len(events) // 2].occurred_at
            prefixed = [_as_listed(b) for b in await listed(client, at, 4, prefix="asof-01")]
            assert prefixed == [b for b in fold_until(events, at).balances if "asof-01" in b[0]]
            assert len(prefixed) > 0
    finally:
        query_server.stop()

    # A read model projected before migration 0003 gets the same totals from its rows.
    # The columns 0003 makes (0007's in-flight columns have a backfill of their own).
    totals = (
        "SELECT (width, period_start, currency, partition, inflow, outflow, movement_count,"
        " opened_count, closed_count)::text FROM currency_totals"
        " ORDER BY width, period_start, currency, partition"
    )
    projected = await db.fetch(totals)
    migration = (Path(projector_package.__file__).parent / "migrations" / _MIGRATION).read_text()
    backfill = migration[migration.index("INSERT INTO currency_totals") :]
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute("DELETE FROM currency_totals")
        await db.execute(backfill)
        assert await db.fetch(totals) == projected
        assert len(projected) > 3 * 4
    finally:
        await transaction.rollback()  # the projector's own rows stay


def _rebuild_until(
    stack: LocalStack, topic: str, database: str, until: datetime, schema: str
) -> subprocess.Popen[str]:
    env = {**stack.environment(), "LEDGER_TOPIC": topic, "LEDGER_DATABASE_URL": database}
    arguments = ["rebuild", "--until", until.isoformat(), "--schema", schema]
    return subprocess.Popen(
        [sys.executable, "-m", "projector", *arguments],
        env=clean_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_rebuild_until_builds_the_model_as_of_the_instant_beside_the_live_one(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    ledger = Ledger(seed=31)
    events = ledger.generate(accounts=100, commands=800)
    log = EventLog(stack, topic, partitions=3)
    await _projected(log, events, db, projectors())
    crowded = crowded_times(events)
    until = crowded[len(crowded) // 2]

    rebuild = _rebuild_until(stack, topic, database, until, "ledger_as_of")
    # The live projection goes on meanwhile.
    ledger.latest = datetime.now(UTC)
    later: list[Event] = []
    for _ in range(100):
        ledger.step()
        later += ledger.decide(ledger.movement())
    log.write(later, per_transaction=10)
    _, stderr = rebuild.communicate(timeout=180)
    assert rebuild.returncode == 0, stderr[-3000:]
    assert "records (" in stderr  # the progress line
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.read_model(db) == checks.fold(log.logged)

    expected = fold_until(events, until)
    rows = await db.fetch(
        "SELECT account_id, currency, status, balance, version FROM ledger_as_of.accounts"
        " ORDER BY account_id"
    )
    built = [
        (
            r["account_id"],
            r["currency"],
            r["status"],
            to_minor(r["balance"], r["currency"]),
            r["version"],
        )
        for r in rows
    ]
    assert built == expected.balances
    assert await db.fetchval("SELECT count(*) FROM ledger_as_of.movements") == sum(
        expected.totals[currency][4] for currency in expected.totals
    )
    assert await db.fetchval("SELECT max(occurred_at) FROM ledger_as_of.movements") <= until
    assert await db.fetchval(
        "SELECT count(*) FROM ledger_as_of.movements WHERE occurred_at = $1", until
    )

    # Refused: the live schema, and an instant to come.
    future = datetime.now(UTC) + timedelta(hours=1)
    for instant, schema in ((until, "ledger"), (future, "ledger_as_of")):
        refused = _rebuild_until(stack, topic, database, instant, schema)
        _, stderr = refused.communicate(timeout=60)
        assert refused.returncode == 2, stderr[-2000:]
