"""Cross-shard transfers on the real stack: the saga's events written into the real topic with
the project's codec (a credit before its send among them), projected by the real projector,
read back through the real query server over TLS with tokens.

The read model must equal a fold of the log (balances, histories, transfers, totals with money
in flight), GetTransfer must answer each state and the permission rules, and conservation must
hold at every instant of a ListBalancesAt / GetTrialBalance sweep."""

import csv
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import projector as projector_package
from devstack.credentials import local_credentials
from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.auth.policy import READ, WRITE
from ledger.command_ids import new_command_id
from ledger.events import records
from ledger.events.records import Event
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from projector.projection import to_minor
from projector.verification import Fold, verify
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog, unique_id
from tests.integration.projector.sagas import SagaHistory, fold_at, generate
from tests.integration.projector.test_analysts_access import run_projector
from tests.integration.projector.test_ledger_as_of import _rebuild_until, listed

pytestmark = pytest.mark.integration

_MIGRATION = "0007_transfers_in_flight.sql"
_LEGS = (
    records.TransferDebited,
    records.TransferCredited,
    records.TransferSent,
    records.TransferRefunded,
)


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _named_transfers(history: SagaHistory, prefix: str) -> dict[str, str]:
    """Four transfers of known fate at the end of the history (so that nothing follows the
    last one's send on its account): completed, refunded, pending, and completed with its
    credit written to the log before its send."""
    now = max(event.occurred_at for event in history.events) + timedelta(seconds=5)
    ids = {}
    for name, (source, destination) in {
        "completed": (0, 2),
        "refunded": (2, 4),
        "pending": (4, 6),
        "early": (6, 8),
    }.items():
        transfer_id = history.send(f"{prefix}-{source}", f"{prefix}-{destination}", 100, now)
        assert transfer_id is not None
        ids[name] = transfer_id
        now += timedelta(milliseconds=5)
    history.credit(ids["completed"], now + timedelta(seconds=1))
    history.refund(ids["refunded"], now + timedelta(seconds=2), "account 'x' is closed")
    history.credit(ids["early"], now + timedelta(seconds=3))
    return ids


def _sweep_instants(events: Sequence[Event], rng: random.Random) -> list[datetime]:
    times = sorted({event.occurred_at for event in events})
    chosen = rng.sample(times, 40) + [t - timedelta(microseconds=1) for t in rng.sample(times, 10)]
    return sorted({times[0] - timedelta(seconds=1), *chosen, times[-1] + timedelta(days=1)})


async def _transfer(client: Any, transfer_id: str) -> Any:
    reply = await client.GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))
    return reply.transfer


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    code: grpc.StatusCode = refused.value.code()
    return code


async def test_sagas_project_to_the_fold_and_money_is_conserved_at_every_instant(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
    tmp_path: Path,
) -> None:
    prefix = f"xs{unique_id()[:6]}"
    history = generate(prefix, seed=11, steps=300)
    named = _named_transfers(history, prefix)
    early_send = next(
        e
        for e in history.events
        if isinstance(e, records.TransferSent) and e.transfer_id == named["early"]
    )
    log = EventLog(stack, topic, partitions=3)
    log.write([e for e in history.events if e is not early_send], per_transaction=13)
    projectors().start()
    await checks.caught_up(db, topic, log.last_offsets())

    credentials = local_credentials(tmp_path / "credentials")
    server = LedgerService.query_server(
        stack, tmp_path, topic=topic, database_url=database, secure=credentials
    )
    server.start()
    try:
        async with server.channel(credentials.token("reader")) as channel:
            client = pb_grpc.QueryServiceStub(channel)
            # The credit is projected, its send not yet: completed, the send's time unknown.
            early = await _transfer(client, named["early"])
            assert early.state == pb.TRANSFER_STATE_COMPLETED
            assert not early.HasField("sent_at")
            assert early.HasField("credited_at")
            assert (early.from_account_id, early.amount) == (f"{prefix}-6", "1.00")

            log.write([early_send])
            await checks.caught_up(db, topic, log.last_offsets())
            await _check_states(client, history, named, prefix)
            await _check_sweep(client, history.events)

        # Balances, versions, statuses and movements; per-currency totals with money in
        # flight; every transfer's row: all equal to independent folds of the log.
        assert await checks.read_model(db) == checks.fold(log.logged)
        fold = Fold()
        fold.add(logged.event for logged in log.logged)
        assert await verify(db, fold) == len(history.accounts)

        await _check_permissions(server, credentials, named, prefix)
    finally:
        server.stop()
    await _check_backfill(db)
    until = await _check_rebuild_until(stack, topic, database, db, history.events)
    _check_export(stack, topic, database, history.events, until, tmp_path / "export")


async def _check_rebuild_until(
    stack: LocalStack, topic: str, database: str, db: Any, events: Sequence[Event]
) -> datetime:
    """`rebuild --until T` at the instant with the most money in flight: verified against its
    fold (transfers and in-flight totals among what it checks), its sends pending."""
    times = sorted({event.occurred_at for event in events})
    until = max(times, key=lambda t: sum(x.in_flight for x in fold_at(events, t).values()))
    rebuild = _rebuild_until(stack, topic, database, until, "ledger_xs_as_of")
    _, stderr = rebuild.communicate(timeout=180)
    assert rebuild.returncode == 0, stderr[-3000:]
    flying = await db.fetch(
        "SELECT currency, sum(transferred_out) - sum(transferred_in) AS amount"
        " FROM ledger_xs_as_of.currency_totals WHERE width = 'day' GROUP BY currency"
    )
    expected = {c: x.in_flight for c, x in fold_at(events, until).items()}
    assert {r["currency"]: to_minor(r["amount"], r["currency"]) for r in flying} == expected
    pending = await db.fetchval(
        "SELECT count(*) FROM ledger_xs_as_of.transfers"
        " WHERE credited_at IS NULL AND refunded_at IS NULL"
    )
    assert pending > 0
    return until


def _check_export(
    stack: LocalStack,
    topic: str,
    database: str,
    events: Sequence[Event],
    at: datetime,
    out: Path,
) -> None:
    """`export --at T` lists every transfer with a step by T in its state then."""
    arguments = ("export", "--at", at.isoformat(), "--format", "csv", "--out", str(out))
    exported = run_projector(stack, database, None, *arguments, topic=topic)
    assert exported.returncode == 0, exported.stderr[-2000:]
    expected: dict[str, str] = {}
    for event in events:
        if event.occurred_at > at or not isinstance(event, _LEGS):
            continue
        if isinstance(event, records.TransferRefunded):
            expected[event.transfer_id] = "REFUNDED"
        elif isinstance(event, records.TransferCredited):
            expected[event.transfer_id] = "COMPLETED"
        else:
            expected.setdefault(event.transfer_id, "PENDING")
    with (out / "transfers.csv").open(newline="") as exported_rows:
        states = {row["transfer_id"]: row["state"] for row in csv.DictReader(exported_rows)}
    assert states == expected
    assert "PENDING" in states.values()


async def _check_backfill(db: Any) -> None:
    """A read model projected before migration 0007 gets the same money in flight from its
    movements (its transfers are all same-shard, but the sums do not care)."""
    totals = (
        "SELECT t::text FROM currency_totals t ORDER BY width, period_start, currency, partition"
    )
    projected = await db.fetch(totals)
    migration = (Path(projector_package.__file__).parent / "migrations" / _MIGRATION).read_text()
    backfill = migration[
        migration.index("UPDATE currency_totals SET") : migration.index("-- One row per transfer")
    ]
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute("UPDATE currency_totals SET transferred_out = 0, transferred_in = 0")
        assert await db.fetch(totals) != projected
        await db.execute(backfill)
        assert await db.fetch(totals) == projected
    finally:
        await transaction.rollback()  # the projector's own rows stay


async def _check_states(
    client: Any, history: SagaHistory, named: dict[str, str], prefix: str
) -> None:
    early = await _transfer(client, named["early"])
    assert early.HasField("sent_at")
    assert early.cross_shard
    assert early.sent_at.ToDatetime() < early.credited_at.ToDatetime()

    completed = await _transfer(client, named["completed"])
    assert completed.state == pb.TRANSFER_STATE_COMPLETED
    assert completed.cross_shard
    assert not completed.HasField("refunded_at")
    assert completed.refund_reason == ""

    refunded = await _transfer(client, named["refunded"])
    assert refunded.state == pb.TRANSFER_STATE_REFUNDED
    assert refunded.refund_reason == "account 'x' is closed"
    assert refunded.HasField("refunded_at")
    assert not refunded.HasField("credited_at")
    assert (refunded.from_account_id, refunded.to_account_id) == (f"{prefix}-2", f"{prefix}-4")

    pending = await _transfer(client, named["pending"])
    assert pending.state == pb.TRANSFER_STATE_PENDING
    assert pending.HasField("sent_at")
    assert not pending.HasField("credited_at")
    assert not pending.HasField("refunded_at")

    same_shard = next(e for e in history.events if isinstance(e, records.TransferDebited))
    local = await _transfer(client, same_shard.transfer_id)
    assert local.state == pb.TRANSFER_STATE_COMPLETED
    assert not local.cross_shard
    assert local.sent_at == local.credited_at

    # The refund is a movement of its own kind in the debited account's history.
    history_page = await client.ListTransactions(
        pb.ListTransactionsRequest(account_id=f"{prefix}-2", order=pb.SORT_ORDER_DESCENDING)
    )
    last = history_page.transactions[0]
    assert last.kind == pb.TRANSACTION_KIND_TRANSFER_REFUND
    assert (last.transfer_id, last.counterparty_account_id) == (named["refunded"], f"{prefix}-4")

    assert await _code(_transfer(client, new_command_id())) == grpc.StatusCode.NOT_FOUND
    assert await _code(_transfer(client, "")) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(_transfer(client, "t\x00")) == grpc.StatusCode.INVALID_ARGUMENT


async def _check_sweep(client: Any, events: Sequence[Event]) -> None:
    """At every instant, per currency: the listed balances sum to the trial balance's total,
    money in flight is what the fold says was sent and neither credited nor refunded, and
    balances + in flight = deposits - withdrawals."""
    flew = 0
    for at in _sweep_instants(events, random.Random(3)):
        expected = fold_at(events, at)
        listed_sums: dict[str, int] = {}
        for balance in await listed(client, at, page_size=7):
            held = to_minor(Decimal(balance.balance), balance.currency)
            listed_sums[balance.currency] = listed_sums.get(balance.currency, 0) + held
        trial = await client.GetTrialBalance(pb.GetTrialBalanceRequest(at=_stamp(at)))
        got = {}
        for totals in trial.currencies:
            currency = totals.currency

            def minor(text: str, currency: str = currency) -> int:
                return to_minor(Decimal(text), currency)

            got[currency] = (
                minor(totals.total_balance),
                minor(totals.money_in_flight),
                minor(totals.deposited) - minor(totals.withdrawn),
            )
            assert got[currency][0] + got[currency][1] == got[currency][2], at
        want = {c: (x.balances, x.in_flight, x.net_deposits) for c, x in expected.items()}
        assert got == want, f"at {at.isoformat()}"
        assert listed_sums == {c: x.balances for c, x in expected.items()}
        flew += sum(x.in_flight for x in expected.values()) > 0
    assert flew > 10, "the sweep must see money in flight at many instants"


async def _check_permissions(
    server: LedgerService, credentials: Any, named: dict[str, str], prefix: str
) -> None:
    transfer_id = named["refunded"]  # from prefix-2 to prefix-4
    for accounts, expected in (
        ([f"{prefix}-2"], None),  # may read the debited account
        ([f"{prefix}-4"], None),  # may read the credited one
        ([f"{prefix}-9", "nobody-*"], grpc.StatusCode.PERMISSION_DENIED),
    ):
        token = credentials.mint([READ], accounts=accounts)
        async with server.channel(token) as channel:
            call = _transfer(pb_grpc.QueryServiceStub(channel), transfer_id)
            if expected is None:
                assert (await call).transfer_id == transfer_id
            else:
                assert await _code(call) == expected
    async with server.channel(credentials.mint([WRITE])) as channel:
        call = _transfer(pb_grpc.QueryServiceStub(channel), transfer_id)
        assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED
