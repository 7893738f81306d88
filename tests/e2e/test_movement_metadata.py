"""Transaction metadata end to end (issue 23): a movement's `reference` and `memo` go from the
command through its events and the projector to ListTransactions, which filters by reference;
they are part of the command (a retry that changes them is refused), and are checked at the edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from ledger.command_ids import new_command_id
from ledger.consistency import ConsistencyToken
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import RunningLedger
from tests.integration.query_server.read_model_writer import unique_id

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Clients:
    commands: cmd_grpc.CommandServiceAsyncStub
    queries: pb_grpc.QueryServiceAsyncStub


@pytest.fixture(scope="module")
async def clients(ledger: RunningLedger) -> AsyncIterator[Clients]:
    async with (
        grpc.aio.insecure_channel(ledger.command_server.address) as command_channel,
        grpc.aio.insecure_channel(ledger.query_server.address) as query_channel,
    ):
        yield Clients(
            cmd_grpc.CommandServiceStub(command_channel), pb_grpc.QueryServiceStub(query_channel)
        )


async def _open(clients: Clients) -> str:
    account = unique_id("meta")
    await clients.commands.OpenAccount(
        cmd.OpenAccountRequest(
            command_id=new_command_id(), account_id=account, currency="EUR", owner="M"
        ),
        timeout=TIMEOUT_S,
    )
    return account


async def _listed(clients: Clients, account: str, token: str, **asked: Any) -> list[pb.Transaction]:
    """Every page of the account's movements as of `token`, with the filters `asked`."""
    found: list[pb.Transaction] = []
    page_token = ""
    while True:
        page = await clients.queries.ListTransactions(
            pb.ListTransactionsRequest(
                account_id=account, consistency_token=token, page_token=page_token, **asked
            ),
            timeout=TIMEOUT_S,
        )
        found += page.transactions
        page_token = page.next_page_token
        if not page_token:
            return found


def _merged(*tokens: str) -> str:
    """One consistency token covering all of `tokens`."""
    return ConsistencyToken.union(ConsistencyToken.decode(token) for token in tokens).encode()


async def test_movements_carry_their_reference_and_memo_to_list_transactions(
    clients: Clients,
) -> None:
    source, destination = await _open(clients), await _open(clients)
    deposited = await clients.commands.Deposit(
        cmd.DepositRequest(
            command_id=new_command_id(),
            account_id=source,
            amount="10.00",
            reference="inv-2024-0042",
            memo="Miete März ✓ 🏠",
        ),
        timeout=TIMEOUT_S,
    )
    withdrawn = await clients.commands.Withdraw(
        cmd.WithdrawRequest(
            command_id=new_command_id(), account_id=source, amount="1.00", memo="cash"
        ),
        timeout=TIMEOUT_S,
    )
    transferred = await clients.commands.Transfer(
        cmd.TransferRequest(
            command_id=new_command_id(),
            from_account_id=source,
            to_account_id=destination,
            amount="2.50",
            reference="E2E/Ä-7",
            memo="r" * 128,
        ),
        timeout=TIMEOUT_S,
    )
    token = _merged(deposited.consistency_token, transferred.consistency_token)
    assert withdrawn.version == 3

    on_source = await _listed(clients, source, token)
    on_destination = await _listed(clients, destination, token)

    assert [(t.kind, t.reference, t.memo) for t in on_source] == [
        (pb.TRANSACTION_KIND_DEPOSIT, "inv-2024-0042", "Miete März ✓ 🏠"),
        (pb.TRANSACTION_KIND_WITHDRAWAL, "", "cash"),
        (pb.TRANSACTION_KIND_TRANSFER_OUT, "E2E/Ä-7", "r" * 128),
    ]
    assert [(t.kind, t.reference, t.memo) for t in on_destination] == [
        (pb.TRANSACTION_KIND_TRANSFER_IN, "E2E/Ä-7", "r" * 128)
    ]


async def test_the_reference_filter_pages_through_exactly_the_matching_movements(
    clients: Clients,
) -> None:
    account = await _open(clients)
    references = ["batch-7", "", "batch-7", "batch-8", "batch-7", "BATCH-7"]
    token = ""
    for reference in references:
        reply = await clients.commands.Deposit(
            cmd.DepositRequest(
                command_id=new_command_id(), account_id=account, amount="1", reference=reference
            ),
            timeout=TIMEOUT_S,
        )
        token = reply.consistency_token
    # Versions 2.. are the deposits, in order.
    matching = [version for version, ref in enumerate(references, start=2) if ref == "batch-7"]

    one_by_one = await _listed(clients, account, token, reference="batch-7", page_size=1)
    newest_first = await _listed(
        clients,
        account,
        token,
        reference="batch-7",
        page_size=2,
        order=pb.SORT_ORDER_DESCENDING,
    )
    unfiltered = await _listed(clients, account, token)
    none = await _listed(clients, account, token, reference="batch-9")

    assert [t.version for t in one_by_one] == matching
    assert {t.reference for t in one_by_one} == {"batch-7"}
    assert [t.version for t in newest_first] == matching[::-1]
    assert len(unfiltered) == len(references)
    assert none == []


async def test_a_page_token_is_bound_to_its_reference(clients: Clients) -> None:
    account = await _open(clients)
    token = ""
    for _ in range(2):
        reply = await clients.commands.Deposit(
            cmd.DepositRequest(
                command_id=new_command_id(), account_id=account, amount="1", reference="x"
            ),
            timeout=TIMEOUT_S,
        )
        token = reply.consistency_token
    first = await clients.queries.ListTransactions(
        pb.ListTransactionsRequest(
            account_id=account, reference="x", page_size=1, consistency_token=token
        ),
        timeout=TIMEOUT_S,
    )
    assert first.next_page_token

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.queries.ListTransactions(
            pb.ListTransactionsRequest(
                account_id=account, reference="y", page_token=first.next_page_token
            ),
            timeout=TIMEOUT_S,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token was issued for a different ListTransactions query" in (
        refused.value.details() or ""
    )


async def test_a_retry_that_changes_the_memo_is_another_command(clients: Clients) -> None:
    account = await _open(clients)
    request = cmd.DepositRequest(
        command_id=new_command_id(), account_id=account, amount="5", reference="r1", memo="first"
    )
    applied = await clients.commands.Deposit(request, timeout=TIMEOUT_S)
    again = await clients.commands.Deposit(request, timeout=TIMEOUT_S)
    assert (again.version, again.consistency_token) == (
        applied.version,
        applied.consistency_token,
    )

    for changed in ({"memo": "second"}, {"memo": ""}, {"reference": "r2"}):
        retry = cmd.DepositRequest()
        retry.CopyFrom(request)
        for name, value in changed.items():
            setattr(retry, name, value)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await clients.commands.Deposit(retry, timeout=TIMEOUT_S)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS, changed


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reference", "r" * 65, "reference is too long: 65 characters, at most 64"),
        ("memo", "m" * 129, "memo is too long: 129 characters, at most 128"),
        ("memo", "two\nlines", "memo contains the invisible or control character U+000A"),
        ("reference", "a\u202eb", "reference contains the invisible or control character U+202E"),
    ],
)
async def test_metadata_is_checked_at_the_edge(
    clients: Clients, field: str, value: str, message: str
) -> None:
    account = await _open(clients)
    requests: list[tuple[Any, Any]] = [
        (clients.commands.Deposit, cmd.DepositRequest(account_id=account, amount="1")),
        (clients.commands.Withdraw, cmd.WithdrawRequest(account_id=account, amount="1")),
        (
            clients.commands.Transfer,
            cmd.TransferRequest(from_account_id=account, to_account_id="other", amount="1"),
        ),
    ]
    for method, request in requests:
        request.command_id = new_command_id()
        setattr(request, field, value)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await method(request, timeout=TIMEOUT_S)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (refused.value.details() or "")
    if field == "reference":
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await clients.queries.ListTransactions(
                pb.ListTransactionsRequest(account_id=account, reference=value),
                timeout=TIMEOUT_S,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (refused.value.details() or "")
