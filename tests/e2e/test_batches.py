"""ExecuteBatch and GetAccounts on the real stack (issue 22): a mixed batch answered command by
command with the log holding exactly its successes in order, atomic batches all or nothing (a
chain too), a batch sent again (also concurrently) appending nothing, and the limits."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import grpc
import pytest

from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.consistency import ConsistencyToken
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import queries_pb2 as q
from tests.e2e import test_read_your_writes
from tests.e2e.running_ledger import RunningLedger
from tests.e2e.test_read_your_writes import EndToEnd
from tests.integration.query_server.read_model_writer import unique_id
from tests.integration.test_command_server import read_events

pytestmark = pytest.mark.integration

OK, INVALID, NOT_FOUND, EXISTS, PRECONDITION, ABORTED = 0, 3, 5, 6, 9, 10
_TIMEOUT_S = 60


# The same command and query stubs as test_read_your_writes's, on this module's ledger.
clients = test_read_your_writes.end_to_end


def open_account(account_id: str) -> cmd.Command:
    return cmd.Command(
        open_account=cmd.OpenAccountRequest(
            command_id=new_command_id(), account_id=account_id, currency="EUR", owner="Batch"
        )
    )


def deposit(account_id: str, amount: str, expected_version: int | None = None) -> cmd.Command:
    request = cmd.DepositRequest(command_id=new_command_id(), account_id=account_id, amount=amount)
    if expected_version is not None:
        request.expected_version = expected_version
    return cmd.Command(deposit=request)


def withdraw(account_id: str, amount: str) -> cmd.Command:
    return cmd.Command(
        withdraw=cmd.WithdrawRequest(
            command_id=new_command_id(), account_id=account_id, amount=amount
        )
    )


def transfer(source: str, destination: str, amount: str) -> cmd.Command:
    return cmd.Command(
        transfer=cmd.TransferRequest(
            command_id=new_command_id(),
            from_account_id=source,
            to_account_id=destination,
            amount=amount,
        )
    )


def command_id(command: cmd.Command) -> str:
    kind = command.WhichOneof("command")
    return "" if kind is None else str(getattr(command, kind).command_id)


async def execute(
    clients: EndToEnd, commands: list[cmd.Command], *, atomic: bool = False
) -> cmd.ExecuteBatchResponse:
    request = cmd.ExecuteBatchRequest(commands=commands, atomic=atomic)
    reply: cmd.ExecuteBatchResponse = await clients.commands.ExecuteBatch(
        request, timeout=_TIMEOUT_S
    )
    return reply


async def opened(clients: EndToEnd, count: int, funds: str | None = None) -> list[str]:
    """`count` new EUR accounts, each funded with `funds` if given, in one batch."""
    accounts = [unique_id("batch") for _ in range(count)]
    commands = [open_account(a) for a in accounts]
    if funds is not None:
        commands += [deposit(a, funds) for a in accounts]
    reply = await execute(clients, commands)
    assert [r.code for r in reply.results] == [OK] * len(commands), reply
    return accounts


def codes(reply: cmd.ExecuteBatchResponse) -> list[int]:
    return [result.code for result in reply.results]


def mixed(accounts: list[str]) -> tuple[list[cmd.Command], list[int]]:
    """1,000 commands over funded `accounts`, one in four failing, each kind of failure seen:
    the commands and the code each must get."""
    cases: list[tuple[Callable[[str, str], cmd.Command], int]] = [
        (lambda a, b: deposit(a, "2.00"), OK),
        (lambda a, b: withdraw(a, "1.00"), OK),
        (lambda a, b: transfer(a, b, "1.50"), OK),
        (lambda a, b: deposit("never-opened", "1.00"), NOT_FOUND),
        (lambda a, b: withdraw(a, "1000000.00"), PRECONDITION),
        (lambda a, b: deposit(a, "1.001"), INVALID),  # refused at the edge, before the writer
        (lambda a, b: open_account(a), EXISTS),
        (lambda a, b: deposit(a, "1.00", expected_version=1), ABORTED),
        (lambda a, b: deposit(a, "3.00"), OK),
        (lambda a, b: cmd.Command(), INVALID),  # holds no request
        (lambda a, b: transfer(b, a, "0.25"), OK),
        (lambda a, b: deposit(a, "0.10"), OK),
    ]
    commands: list[cmd.Command] = []
    expected: list[int] = []
    for n in range(1000):
        make, code = cases[n % len(cases)]
        commands.append(make(accounts[n % len(accounts)], accounts[(n + 1) % len(accounts)]))
        expected.append(code)
    return commands, expected


async def test_a_mixed_batch_is_answered_command_by_command_and_logs_its_successes_in_order(
    clients: EndToEnd, ledger: RunningLedger, stack: LocalStack
) -> None:
    accounts = await opened(clients, 10, funds="1000.00")
    earlier = {event.command_id for event in read_events(stack, ledger.topic)}
    commands, expected = mixed(accounts)

    reply = await execute(clients, commands)

    assert codes(reply) == expected
    failed = [r for r in reply.results if r.code != OK]
    assert all(r.message and not r.consistency_token for r in failed)
    succeeded = [r for r in reply.results if r.code == OK]
    assert all(r.version > 1 and r.consistency_token for r in succeeded)
    covered = ConsistencyToken.decode(reply.consistency_token).positions
    assert all(ConsistencyToken.decode(r.consistency_token).covered_by(covered) for r in succeeded)
    # Per account (one partition each), the log holds exactly the successful commands that
    # touched it, in request order.
    applied = {command_id(c) for c, code in zip(commands, expected, strict=True) if code == OK}
    logged: dict[str, list[str]] = defaultdict(list)
    for event in read_events(stack, ledger.topic):
        if event.account_id in accounts and event.command_id not in earlier:
            logged[event.account_id].append(event.command_id)
    wanted: dict[str, list[str]] = defaultdict(list)
    for command in commands:
        if command_id(command) in applied:
            for account in _touched(command):
                wanted[account].append(command_id(command))
    assert dict(logged) == dict(wanted)


def _touched(command: cmd.Command) -> list[str]:
    if command.HasField("transfer"):
        return [command.transfer.from_account_id, command.transfer.to_account_id]
    kind = command.WhichOneof("command")
    return [getattr(command, kind).account_id] if kind else []


async def test_an_atomic_batch_with_one_failing_command_applies_nothing(
    clients: EndToEnd, ledger: RunningLedger, stack: LocalStack
) -> None:
    a, b, c = await opened(clients, 3, funds="10.00")
    before = len(read_events(stack, ledger.topic))
    commands = [deposit(a, "5.00"), transfer(a, b, "3.00"), withdraw(b, "100.00"), deposit(c, "1")]

    reply = await execute(clients, commands, atomic=True)

    assert codes(reply) == [ABORTED, ABORTED, PRECONDITION, ABORTED]
    assert "insufficient" in reply.results[2].message.lower()
    for result in (reply.results[0], reply.results[1], reply.results[3]):
        assert "command 2 of the atomic batch failed" in result.message
    assert reply.consistency_token == ""
    assert len(read_events(stack, ledger.topic)) == before
    balances = await clients.queries.GetAccounts(
        q.GetAccountsRequest(account_ids=[a, b, c]), timeout=_TIMEOUT_S
    )
    assert [(x.version, x.balance) for x in balances.accounts] == [(2, "10.00")] * 3


async def test_an_atomic_chain_moves_money_that_only_the_first_account_has(
    clients: EndToEnd,
) -> None:
    a, b, c = await opened(clients, 3)
    funded = await execute(clients, [deposit(a, "10.00")])
    assert codes(funded) == [OK]

    reply = await execute(clients, [transfer(a, b, "10.00"), transfer(b, c, "10.00")], atomic=True)

    assert codes(reply) == [OK, OK]
    nobody = unique_id("never-opened")
    read = await clients.queries.GetAccounts(
        q.GetAccountsRequest(
            account_ids=[c, nobody, a, b, c], consistency_token=reply.consistency_token
        ),
        timeout=_TIMEOUT_S,
    )
    assert [(x.account_id, x.balance) for x in read.accounts] == [
        (c, "10.00"),
        (a, "0.00"),
        (b, "0.00"),
    ]
    assert list(read.missing) == [nobody]


@pytest.mark.parametrize("atomic", [False, True])
async def test_the_same_batch_sent_again_and_concurrently_is_answered_alike_and_appends_nothing(
    clients: EndToEnd, ledger: RunningLedger, stack: LocalStack, atomic: bool
) -> None:
    accounts = await opened(clients, 4, funds="100.00")
    commands = [transfer(accounts[n % 4], accounts[(n + 1) % 4], "1.00") for n in range(100)]
    commands += [deposit(a, "5.00") for a in accounts]
    if not atomic:  # failures that stay failures whatever else was applied
        commands += [deposit("never-opened", "1.00"), cmd.Command()]

    first = await execute(clients, commands, atomic=atomic)
    logged = len(read_events(stack, ledger.topic))
    again = await execute(clients, commands, atomic=atomic)
    together = await asyncio.gather(*(execute(clients, commands, atomic=atomic) for _ in range(3)))

    assert OK in codes(first)
    for reply in (again, *together):
        assert reply == first
    assert len(read_events(stack, ledger.topic)) == logged

    fresh = [deposit(a, "1.00") for a in accounts] + [transfer(accounts[0], accounts[1], "2")]
    concurrent = await asyncio.gather(*(execute(clients, fresh, atomic=atomic) for _ in range(4)))

    assert all(reply == concurrent[0] for reply in concurrent)
    assert codes(concurrent[0]) == [OK] * len(fresh)
    assert len(read_events(stack, ledger.topic)) == logged + len(fresh) + 1  # a transfer: two


async def test_a_batch_holds_1_to_8000_commands(clients: EndToEnd) -> None:
    (account,) = await opened(clients, 1)

    full = await execute(clients, [deposit(account, "0.01") for _ in range(8000)])

    assert codes(full) == [OK] * 8000
    assert full.results[-1].version == 8001
    for count in (0, 8001):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await execute(clients, [deposit(account, "0.01") for _ in range(count)])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "send 1 to 8,000 per call" in (refused.value.details() or "")


async def test_get_accounts_refuses_more_than_1000_ids(clients: EndToEnd) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.queries.GetAccounts(
            q.GetAccountsRequest(account_ids=[f"a{n}" for n in range(1001)]), timeout=_TIMEOUT_S
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
