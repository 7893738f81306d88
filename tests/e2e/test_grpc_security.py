"""TLS, tokens and per-account authorization on the real servers, started as `make run` starts
them: TLS with the local CA, tokens from the local signing key (ledger.auth)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.credentials import local_credentials
from devstack.ledger_services import LedgerService
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack
from ledger.auth.local import LocalCredentials
from ledger.auth.policy import READ, WRITE
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as q
from ledger.v1 import queries_pb2_grpc as q_grpc
from query_server.messages import day
from tests.e2e.running_ledger import PROMPTLY_S, RunningLedger
from tests.eventually import eventually_async

pytestmark = pytest.mark.integration

LEDGER_SECURE = True
ACME = ("acme-1", "acme-2")
GLOBEX = "globex-1"


@dataclass(frozen=True)
class Opened:
    credentials: LocalCredentials
    consistency_token: str  # covers every account opened and funded


def _credentials(ledger: RunningLedger) -> LocalCredentials:
    assert ledger.credentials is not None
    return ledger.credentials


async def _code(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value


@pytest.fixture(scope="module")
async def opened(ledger: RunningLedger) -> Opened:
    """acme-1, acme-2 and globex-1, opened and funded with the ready writer token."""
    credentials = _credentials(ledger)
    token = ""
    async with ledger.command_server.channel(credentials.token("writer")) as channel:
        commands = cmd_grpc.CommandServiceStub(channel)
        for account in (*ACME, GLOBEX):
            await commands.OpenAccount(
                cmd.OpenAccountRequest(
                    command_id=new_command_id(), account_id=account, currency="EUR", owner="x"
                )
            )
            deposited = await commands.Deposit(
                cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="10")
            )
            token = deposited.consistency_token
    return Opened(credentials, token)


async def test_tls_with_the_local_ca_and_a_token_works(
    ledger: RunningLedger, opened: Opened
) -> None:
    async with ledger.query_server.channel(opened.credentials.token("reader")) as channel:
        reply = await q_grpc.QueryServiceStub(channel).GetAccount(
            q.GetAccountRequest(account_id=GLOBEX, consistency_token=opened.consistency_token),
            timeout=PROMPTLY_S,
        )
    assert reply.account.balance == "10.00"


async def test_health_is_open_without_a_token(ledger: RunningLedger) -> None:
    for server in (ledger.command_server, ledger.query_server):
        async with server.channel() as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROMPTLY_S
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_plaintext_against_the_tls_port_fails(ledger: RunningLedger) -> None:
    async with grpc.aio.insecure_channel(ledger.command_server.address) as channel:
        code = await _code(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        )
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_no_expired_foreign_or_misaddressed_token_is_unauthenticated(
    ledger: RunningLedger, opened: Opened, tmp_path: Path
) -> None:
    credentials = opened.credentials
    strangers = local_credentials(tmp_path)  # another stack's signing key
    tokens = {
        None: "no bearer token",
        credentials.mint([READ], ttl_seconds=-300): "expired",
        strangers.token("reader"): "does not trust",
        credentials.mint([READ], audience="payments"): "another audience",
    }
    for token, reason in tokens.items():
        async with ledger.query_server.channel(token) as channel:
            refused = await _refusal(
                q_grpc.QueryServiceStub(channel).GetAccount(
                    q.GetAccountRequest(account_id=GLOBEX), timeout=PROMPTLY_S
                )
            )
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, reason
        assert reason in (refused.details() or ""), refused.details()


async def test_a_reader_may_read_but_not_command(ledger: RunningLedger, opened: Opened) -> None:
    reader = opened.credentials.token("reader")
    async with ledger.command_server.channel(reader) as channel:
        commands = cmd_grpc.CommandServiceStub(channel)
        calls: list[Awaitable[Any]] = [
            commands.OpenAccount(
                cmd.OpenAccountRequest(
                    command_id=new_command_id(), account_id="r-1", currency="EUR", owner="r"
                )
            ),
            commands.Deposit(
                cmd.DepositRequest(command_id=new_command_id(), account_id=GLOBEX, amount="1")
            ),
            commands.Withdraw(
                cmd.WithdrawRequest(command_id=new_command_id(), account_id=GLOBEX, amount="1")
            ),
            commands.Transfer(
                cmd.TransferRequest(
                    command_id=new_command_id(),
                    from_account_id=GLOBEX,
                    to_account_id="acme-1",
                    amount="1",
                )
            ),
            commands.CloseAccount(
                cmd.CloseAccountRequest(command_id=new_command_id(), account_id=GLOBEX)
            ),
        ]
        for call in calls:
            refused = await _refusal(call)
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "needs the scope ledger:write" in (refused.details() or "")
    async with ledger.query_server.channel(reader) as channel:
        queries = q_grpc.QueryServiceStub(channel)
        read = opened.consistency_token
        await queries.GetAccount(q.GetAccountRequest(account_id=GLOBEX, consistency_token=read))
        await queries.ListAccounts(q.ListAccountsRequest(consistency_token=read))
        await queries.ListTransactions(q.ListTransactionsRequest(account_id=GLOBEX))
        await queries.GetProjectionStatus(q.GetProjectionStatusRequest())
        now = Timestamp()
        now.GetCurrentTime()
        await queries.GetTrialBalance(q.GetTrialBalanceRequest(at=now))
        await queries.ListBalancesAt(q.ListBalancesAtRequest(at=now))


async def test_a_token_for_acme_accounts_may_not_touch_globex(
    ledger: RunningLedger, opened: Opened
) -> None:
    acme = opened.credentials.mint([WRITE, READ], accounts=["acme-*"])
    async with ledger.command_server.channel(acme) as channel:
        commands = cmd_grpc.CommandServiceStub(channel)
        refused = await _refusal(
            commands.Deposit(
                cmd.DepositRequest(command_id=new_command_id(), account_id=GLOBEX, amount="1")
            )
        )
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.details() == (
            "the token may act on accounts matching acme-*; globex-1 is not one of them"
        )
        debit_globex = cmd.TransferRequest(
            command_id=new_command_id(), from_account_id=GLOBEX, to_account_id="acme-1", amount="1"
        )
        assert await _code(commands.Transfer(debit_globex)) == grpc.StatusCode.PERMISSION_DENIED
        # Its own account it may debit, even to pay another company.
        paid = await commands.Transfer(
            cmd.TransferRequest(
                command_id=new_command_id(),
                from_account_id="acme-1",
                to_account_id=GLOBEX,
                amount="1",
            )
        )
    async with ledger.query_server.channel(acme) as channel:
        queries = q_grpc.QueryServiceStub(channel)
        for call in (
            queries.GetAccount(q.GetAccountRequest(account_id=GLOBEX)),
            queries.ListTransactions(q.ListTransactionsRequest(account_id=GLOBEX)),
            queries.GetBalanceAt(q.GetBalanceAtRequest(account_id=GLOBEX)),
        ):
            assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED
        listed = await queries.ListAccounts(
            q.ListAccountsRequest(consistency_token=paid.consistency_token, page_size=1)
        )
        pages = [listed]
        while pages[-1].next_page_token:
            pages.append(
                await queries.ListAccounts(
                    q.ListAccountsRequest(page_size=1, page_token=pages[-1].next_page_token)
                )
            )
        assert [a.account_id for page in pages for a in page.accounts] == list(ACME)
        history = await queries.ListTransactions(q.ListTransactionsRequest(account_id="acme-1"))
        assert len(history.transactions) == 2  # the deposit and the transfer
        # From yesterday, so that a run crossing midnight UTC still finds the day it wrote on.
        today = dt.datetime.now(dt.UTC).date()
        yesterday = today - dt.timedelta(days=1)
        summaries = await queries.GetDailySummaries(
            q.GetDailySummariesRequest(first_day=day(yesterday), last_day=day(today))
        )
        assert {s.account_id for s in summaries.summaries} == set(ACME)
        now = Timestamp()
        now.GetCurrentTime()
        balances = await queries.ListBalancesAt(q.ListBalancesAtRequest(at=now))
        assert [b.account_id for b in balances.balances] == list(ACME)
        refused = await _refusal(queries.GetTrialBalance(q.GetTrialBalanceRequest(at=now)))
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "reads totals of the whole ledger" in (refused.details() or "")
        watch = queries.WatchAccount(q.WatchAccountRequest(account_id=GLOBEX))
        refused = await _refusal(watch.read())
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_batch_or_a_read_of_many_needs_every_account_it_acts_on(
    ledger: RunningLedger, opened: Opened
) -> None:
    acme = opened.credentials.mint([WRITE, READ], accounts=["acme-*"])
    ours = cmd.Command(
        deposit=cmd.DepositRequest(command_id=new_command_id(), account_id="acme-2", amount="1")
    )
    theirs = cmd.Command(
        withdraw=cmd.WithdrawRequest(command_id=new_command_id(), account_id=GLOBEX, amount="1")
    )
    async with ledger.command_server.channel(acme) as channel:
        commands = cmd_grpc.CommandServiceStub(channel)
        mixed = cmd.ExecuteBatchRequest(commands=[ours, theirs])
        assert await _code(commands.ExecuteBatch(mixed)) == grpc.StatusCode.PERMISSION_DENIED
        done = await commands.ExecuteBatch(cmd.ExecuteBatchRequest(commands=[ours]))
        assert [r.code for r in done.results] == [0]
    async with ledger.query_server.channel(acme) as channel:
        queries = q_grpc.QueryServiceStub(channel)
        both = q.GetAccountsRequest(account_ids=["acme-2", GLOBEX])
        assert await _code(queries.GetAccounts(both)) == grpc.StatusCode.PERMISSION_DENIED
        read = await queries.GetAccounts(
            q.GetAccountsRequest(account_ids=list(ACME), consistency_token=done.consistency_token)
        )
        assert [a.account_id for a in read.accounts] == list(ACME)


async def test_with_mutual_tls_only_clients_with_a_ca_signed_certificate_get_in(
    stack: LocalStack, ledger: RunningLedger, opened: Opened, tmp_path: Path
) -> None:
    credentials = opened.credentials
    service = LedgerService.query_server(
        stack,
        tmp_path,
        topic=ledger.topic,
        database_url=ledger.database_url,
        secure=credentials,
        extra_env={
            "LEDGER_TLS_CLIENT_CA": str(credentials.ca),
            "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}",
        },
    )
    cert, key = credentials.client_certificate("test-client")
    with_cert = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(credentials.ca.read_bytes(), key, cert),
        grpc.access_token_call_credentials(credentials.token("reader")),
    )
    service.launch()
    try:
        async with grpc.aio.secure_channel(service.address, with_cert) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                except grpc.aio.AioRpcError:
                    return False  # not listening yet
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            await eventually_async(serving, timeout=60, message="mTLS query server serving")
            await q_grpc.QueryServiceStub(channel).GetAccount(
                q.GetAccountRequest(account_id=GLOBEX), timeout=PROMPTLY_S
            )
        async with service.channel(credentials.token("reader")) as without_cert:
            code = await _code(
                q_grpc.QueryServiceStub(without_cert).GetAccount(
                    q.GetAccountRequest(account_id=GLOBEX), timeout=5
                )
            )
        assert code == grpc.StatusCode.UNAVAILABLE  # the handshake fails: no call is made
    finally:
        service.stop()


def test_a_server_without_tls_refuses_a_non_loopback_address(
    stack: LocalStack, tmp_path: Path
) -> None:
    service = LedgerService.query_server(stack, tmp_path, listen=f"0.0.0.0:{free_port()}")
    assert service.run_to_exit(timeout=60) == 2
    log = service.log_text()
    assert "LEDGER_INSECURE=1 serves without TLS" in log
    assert "set LEDGER_QUERY_ADDR to 127.0.0.1:<port>" in log
