"""The client against a running, secure Ledger: named by LEDGER_TEST_COMMAND_ADDRESS,
LEDGER_TEST_QUERY_ADDRESS, LEDGER_TEST_CA_FILE and LEDGER_TEST_TOKEN_FILE (a writer's token);
skipped without them. The repository's tests/e2e/test_python_client.py runs these against the
real servers from a fresh virtual environment with only this package installed."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
from lossy_proxy import LossyProxy

from ledger_client import (
    AccountStatus,
    LedgerClient,
    LedgerError,
    Retrier,
    RetryPolicy,
    TransactionKind,
    secure_channel,
)
from ledger_client.v1 import commands_pb2 as cpb

VARIABLES = ("COMMAND_ADDRESS", "QUERY_ADDRESS", "CA_FILE", "TOKEN_FILE")
SETTINGS = {name: os.environ.get(f"LEDGER_TEST_{name}", "") for name in VARIABLES}
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not all(SETTINGS.values()), reason="no Ledger named by LEDGER_TEST_*"),
]
PATIENCE_S = 30.0


def _channel(address: str) -> grpc.Channel:
    return secure_channel(address, ca_file=SETTINGS["CA_FILE"], token_file=SETTINGS["TOKEN_FILE"])


@pytest.fixture
def client() -> Iterator[LedgerClient]:
    with LedgerClient.connect(
        SETTINGS["COMMAND_ADDRESS"],
        SETTINGS["QUERY_ADDRESS"],
        ca_file=SETTINGS["CA_FILE"],
        token_file=SETTINGS["TOKEN_FILE"],
    ) as connected:
        yield connected


def _account_id() -> str:
    return f"py-{uuid.uuid4().hex[:12]}"


def test_a_session_reads_its_own_writes(client: LedgerClient) -> None:
    session = client.session()
    first, second = _account_id(), _account_id()
    session.open_account(first, "EUR", "First")
    session.open_account(second, "EUR", "Second")
    deposited = session.deposit(first, Decimal("12.50"))
    session.deposit(second, Decimal("0.01"))
    session.transfer(first, second, Decimal("2.5"))
    # No tokens passed by hand: the session waits for all of its writes, whichever partitions.
    account = session.get_account(first)
    assert (account.balance, account.version, account.status) == (
        Decimal("10.00"),
        3,
        AccountStatus.OPEN,
    )
    assert session.get_account(second).balance == Decimal("2.51")
    movements = session.list_transactions(first).items
    assert [(m.kind, m.amount) for m in movements] == [
        (TransactionKind.DEPOSIT, Decimal("12.50")),
        (TransactionKind.TRANSFER_OUT, Decimal("2.50")),
    ]
    assert movements[0].command_id == deposited.command_id
    assert movements[1].counterparty_account_id == second


def test_movements_keep_their_reference_and_memo_and_can_be_found_by_reference(
    client: LedgerClient,
) -> None:
    session = client.session()
    source, target = _account_id(), _account_id()
    session.open_account(source, "EUR", "Source")
    session.open_account(target, "EUR", "Target")
    session.deposit(source, Decimal("10"), reference="inv-7", memo="März ✓")
    session.withdraw(source, Decimal("1"), memo="cash")
    session.transfer(source, target, Decimal("2"), reference="inv-7")

    listed = session.list_transactions(source).items
    found = session.list_transactions(source, reference="inv-7").items
    arrived = session.list_transactions(target, reference="inv-7").items

    assert [(m.reference, m.memo) for m in listed] == [
        ("inv-7", "März ✓"),
        ("", "cash"),
        ("inv-7", ""),
    ]
    assert [m.kind for m in found] == [TransactionKind.DEPOSIT, TransactionKind.TRANSFER_OUT]
    assert [m.kind for m in arrived] == [TransactionKind.TRANSFER_IN]
    with pytest.raises(LedgerError) as refused:
        session.deposit(source, Decimal("1"), memo="m" * 129)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_every_command_and_query_with_typed_results(client: LedgerClient) -> None:
    session = client.session()
    source, target = _account_id(), _account_id()
    session.open_account(source, "USD", "Source")
    session.open_account(target, "USD", "Target")
    session.deposit(source, Decimal("100"))
    session.withdraw(source, Decimal("30.01"), expected_version=2)
    moved = session.transfer(source, target, Decimal("69.99"))
    session.withdraw(target, Decimal("69.99"))
    closed = session.close_account(target)

    assert session.get_account(source).balance == Decimal("0.00")
    gone = session.get_account(target)
    assert (gone.status, gone.version, closed.version) == (AccountStatus.CLOSED, 4, 4)
    newest = session.list_transactions(source, newest_first=True, page_size=1)
    assert newest.next_page_token
    assert (newest.items[0].kind, newest.items[0].transfer_id) == (
        TransactionKind.TRANSFER_OUT,
        moved.command_id,
    )
    assert newest.items[0].balance_after == Decimal("0")
    when = newest.items[0].occurred_at
    assert when is not None
    assert session.get_balance_at(source, when).balance == Decimal("0.00")
    day = when.date()
    summaries = session.get_daily_summaries(day, day, account_id=source).items
    assert [(s.inflow, s.outflow, s.movement_count) for s in summaries] == [
        (Decimal("100.00"), Decimal("100.00"), 3)
    ]
    listed = session.list_accounts(status=AccountStatus.CLOSED, currency="USD", page_size=500)
    assert target in {account.account_id for account in listed.items}

    # Watching: the current state first, then each change with its movement.
    watch = session.watch_account(source, timeout=PATIENCE_S)
    first, movement = next(watch)
    assert (first.version, movement) == (4, None)
    session.deposit(source, Decimal("5"))
    after, movement = next(watch)
    assert (after.balance, after.version) == (Decimal("5.00"), 5)
    assert movement is not None
    assert (movement.kind, movement.amount) == (TransactionKind.DEPOSIT, Decimal("5.00"))
    watch.close()


def test_a_batch_gets_one_result_per_command_and_an_atomic_one_applies_all_or_nothing(
    client: LedgerClient,
) -> None:
    session = client.session()
    a, b = _account_id(), _account_id()
    opened = session.execute_batch(
        [
            cpb.Command(open_account=cpb.OpenAccountRequest(account_id=a, currency="EUR")),
            cpb.Command(open_account=cpb.OpenAccountRequest(account_id=b, currency="EUR")),
            cpb.Command(deposit=cpb.DepositRequest(account_id=a, amount="10")),
            cpb.Command(deposit=cpb.DepositRequest(account_id="never-opened", amount="1")),
        ]
    )
    assert [x.code for x in opened.results] == [grpc.StatusCode.OK] * 3 + [
        grpc.StatusCode.NOT_FOUND
    ]
    assert all(x.command_id for x in opened.results)  # made by the client

    chain = [
        cpb.Command(transfer=cpb.TransferRequest(from_account_id=a, to_account_id=b, amount="4")),
        cpb.Command(withdraw=cpb.WithdrawRequest(account_id=b, amount="5")),  # b has 4
    ]
    refused = session.execute_batch(chain, atomic=True)
    assert [x.code for x in refused.results] == [
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ]
    chain[1].withdraw.amount = "4"
    applied = session.execute_batch(chain, atomic=True)
    assert [x.version for x in applied.results] == [3, 3]
    assert session.get_account(b).balance == Decimal("0.00")


def test_many_accounts_are_read_in_one_call(client: LedgerClient) -> None:
    session = client.session()
    a, b = _account_id(), _account_id()
    session.open_account(a, "USD")
    session.open_account(b, "USD")
    session.deposit(a, Decimal("7.25"))
    found = session.get_accounts([a, b, f"{a}-none"])
    assert sorted((x.account_id, x.balance) for x in found.accounts) == sorted(
        [(a, Decimal("7.25")), (b, Decimal("0.00"))]
    )
    assert found.missing == [f"{a}-none"]
    now = datetime.now(UTC)
    page = session.list_balances_at(now, account_id_prefix=a)
    assert [(x.account_id, x.balance, x.version) for x in page.items] == [(a, Decimal("7.25"), 2)]
    totals = {x.currency: x for x in session.get_trial_balance(now).currencies}
    assert totals["USD"].account_count >= 2
    assert totals["USD"].total_balance >= Decimal("7.25")


def test_a_refused_command_fails_at_once_with_its_status(client: LedgerClient) -> None:
    account_id = _account_id()
    client.open_account(account_id, "JPY")
    with pytest.raises(LedgerError) as refused:
        client.deposit(account_id, Decimal("1.50"))  # yen have no decimal places
    assert (refused.value.code, refused.value.attempts) == (grpc.StatusCode.INVALID_ARGUMENT, 1)
    assert client.deposit(account_id, Decimal("1500.00")).version == 2


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {PATIENCE_S} s: {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("loss", ["connection cut", "attempt deadline"])
def test_a_command_whose_answer_was_lost_is_retried_and_applied_once(
    client: LedgerClient, loss: str
) -> None:
    """The deposit reaches the server and is applied, but its answer never comes back: the
    connection is cut (UNAVAILABLE), or the attempt's deadline passes (DEADLINE_EXCEEDED, and
    then the connection is cut too). The client resends it with the same command id and gets the
    first answer; one event."""
    proxy = LossyProxy(SETTINGS["COMMAND_ADDRESS"])
    retried: list[grpc.StatusCode] = []
    policy = RetryPolicy(timeout=60.0, attempt_timeout=1.0 if loss == "attempt deadline" else 30.0)
    retrier = Retrier(policy, on_retry=lambda code, _: retried.append(code))
    lossy = LedgerClient(
        _channel(proxy.address), _channel(SETTINGS["QUERY_ADDRESS"]), retry=retrier
    )
    account_id = _account_id()
    try:
        opened = lossy.open_account(account_id, "EUR")  # the connection through the proxy is up
        proxy.hold()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lossy.deposit, account_id, Decimal("7.25"))
            # Applied (the read model has it) while its answer is held back.
            _eventually(
                lambda: (
                    client.get_account(
                        account_id, consistency_token=opened.consistency_token
                    ).version
                    == 2
                ),
                "deposit applied",
            )
            if loss == "attempt deadline":
                _eventually(lambda: bool(retried), "an attempt timed out")
            # A new connection for the next attempt (what was dropped leaves TLS unusable).
            proxy.cut()
            result = pending.result(timeout=PATIENCE_S + policy.timeout)
    finally:
        lossy.close()
        proxy.close()
    expected = (
        grpc.StatusCode.UNAVAILABLE
        if loss == "connection cut"
        else grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert expected in retried
    assert result.version == 2
    movements = client.list_transactions(
        account_id, consistency_token=result.consistency_token
    ).items
    assert [(m.kind, m.amount, m.command_id, m.version) for m in movements] == [
        (TransactionKind.DEPOSIT, Decimal("7.25"), result.command_id, 2)
    ]
    assert client.get_account(account_id).version == 2
