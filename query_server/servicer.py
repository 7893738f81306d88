"""ledger.v1.QueryService: translates requests into read-model queries and rows into replies."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import grpc

from ledger.auth.principal import current_principal, permitted_accounts_regex
from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from query_server import messages, validation
from query_server.checkpoints import Checkpoints
from query_server.errors import (
    InvalidArgument,
    NotCovered,
    NotFound,
    PermissionDenied,
    QueryFailed,
    ResourceExhausted,
    Unavailable,
)
from query_server.owners import Owners
from query_server.queries import ReadModel
from query_server.rows import Page as Rows
from query_server.rows import Snapshot
from query_server.token_wait import TokenWaiter
from query_server.validation import Page
from query_server.watch import Watchers, follow
from query_server.watermarks import HighWatermarks

log = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[object, object]
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

_STATUS_OF: dict[type[QueryFailed], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotCovered: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# How long GetProjectionStatus waits for Kafka before answering with the last watermarks seen.
_WATERMARK_WAIT_SECONDS = 0.5


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, QueryFailed):
        code = next(code for kind, code in _STATUS_OF.items() if isinstance(error, kind))
        return code, error.message
    log.error("bug answering a query", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error in the query server (see its log)"


def _unary(
    method: Callable[[QueryServicer, _Request, _Context], Awaitable[_Response]],
) -> Callable[[QueryServicer, _Request, _Context], Coroutine[Any, Any, _Response]]:
    """Answers a refusal (or a bug) with its status code and message."""

    @functools.wraps(method)
    async def answer(self: QueryServicer, request: _Request, context: _Context) -> _Response:
        try:
            return await method(self, request, context)
        except Exception as error:
            await context.abort(*_status_of(error))

    return answer


def _streaming(
    method: Callable[[QueryServicer, _Request, _Context], AsyncIterator[_Response]],
) -> Callable[[QueryServicer, _Request, _Context], AsyncIterator[_Response]]:
    """Ends a stream on a refusal (or a bug) with its status code and message."""

    @functools.wraps(method)
    async def answer(
        self: QueryServicer, request: _Request, context: _Context
    ) -> AsyncIterator[_Response]:
        try:
            async for response in method(self, request, context):
                yield response
        except Exception as error:
            await context.abort(*_status_of(error))

    return answer


@dataclasses.dataclass(frozen=True, slots=True)
class ReadSide:
    """What the servicer needs once the read model is reachable."""

    read_model: ReadModel
    checkpoints: Checkpoints
    token_waiter: TokenWaiter
    watermarks: HighWatermarks
    watchers: Watchers
    owners: Owners


class QueryServicer(pb_grpc.QueryServiceServicer):
    def __init__(self) -> None:
        # Set by the composition root once the database is reachable; until then: UNAVAILABLE.
        self.read_side: ReadSide | None = None

    @_unary
    async def GetAccount(
        self, request: pb.GetAccountRequest, context: _Context
    ) -> pb.GetAccountResponse:
        account_id = validation.account_id(request.account_id)
        token, side = await self._ready(request, context)
        row, snapshot = await side.read_model.account(account_id)
        row = await side.owners.opened(row)
        return pb.GetAccountResponse(
            account=messages.account(row), freshness=_fresh(token, snapshot)
        )

    @_unary
    async def GetAccounts(
        self, request: pb.GetAccountsRequest, context: _Context
    ) -> pb.GetAccountsResponse:
        account_ids = validation.account_ids(request.account_ids)
        token, side = await self._ready(request, context)
        rows, snapshot = await side.read_model.accounts_by_id(account_ids)
        return pb.GetAccountsResponse(
            accounts=[messages.account(row) for row in rows if row is not None],
            missing=[a for a, row in zip(account_ids, rows, strict=True) if row is None],
            freshness=_fresh(token, snapshot),
        )

    @_unary
    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: _Context
    ) -> pb.ListAccountsResponse:
        query = validation.list_accounts(request)
        token, side = await self._ready(request, context)
        # A token restricted to some accounts (ledger.auth) lists only those.
        page = await side.read_model.accounts(query, permitted_accounts_regex())
        rows = await side.owners.all_opened(page.rows)
        return pb.ListAccountsResponse(
            accounts=[messages.account(row) for row in rows],
            **_page_fields(token, query.page, page),
        )

    @_unary
    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: _Context
    ) -> pb.ListTransactionsResponse:
        query = validation.list_transactions(request)
        token, side = await self._ready(request, context)
        movements = await side.read_model.movements(query)
        page = movements.page
        return pb.ListTransactionsResponse(
            transactions=[messages.transaction(row, movements.currency) for row in page.rows],
            **_page_fields(token, query.page, page),
        )

    @_unary
    async def GetBalanceAt(
        self, request: pb.GetBalanceAtRequest, context: _Context
    ) -> pb.GetBalanceAtResponse:
        account_id, at = validation.balance_at(request)
        token, side = await self._ready(request, context)
        row, snapshot = await side.read_model.balance_at(account_id, at)
        _check_covered(token, snapshot)
        return messages.balance(row, snapshot)

    @_unary
    async def ListBalancesAt(
        self, request: pb.ListBalancesAtRequest, context: _Context
    ) -> pb.ListBalancesAtResponse:
        query = validation.balances_at(request)
        token, side = await self._ready(request, context)
        page = await side.read_model.balances_at(query, permitted_accounts_regex())
        response = pb.ListBalancesAtResponse(**_page_fields(token, query.page, page))
        messages.add_balances_at(response.balances, page.rows)
        return response

    @_unary
    async def GetTrialBalance(
        self, request: pb.GetTrialBalanceRequest, context: _Context
    ) -> pb.GetTrialBalanceResponse:
        # Tokens restricted to some accounts are refused by the policy (ledger/auth/policy.py).
        at = validation.instant(request, "the trial balance")
        token, side = await self._ready(request, context)
        rows, snapshot = await side.read_model.trial_balance(at)
        return pb.GetTrialBalanceResponse(
            currencies=[messages.currency_totals(row) for row in rows],
            freshness=_fresh(token, snapshot),
        )

    @_unary
    async def GetTransfer(
        self, request: pb.GetTransferRequest, context: _Context
    ) -> pb.GetTransferResponse:
        transfer_id = validation.transfer_id(request.transfer_id)
        token, side = await self._ready(request, context)
        row, snapshot = await side.read_model.transfer(transfer_id)
        # Only the read model knows the accounts: the policy checked the scope, this the
        # accounts (a token that may read either side may see the transfer).
        principal = current_principal.get()
        if principal is not None and not (
            principal.may_act_on(row.from_account_id) or principal.may_act_on(row.to_account_id)
        ):
            raise PermissionDenied(
                f"the token may read accounts matching {', '.join(principal.accounts or ())}; "
                f"transfer {transfer_id!r} neither debits nor credits one of them"
            )
        return pb.GetTransferResponse(
            transfer=messages.transfer(row), freshness=_fresh(token, snapshot)
        )

    @_unary
    async def GetDailySummaries(
        self, request: pb.GetDailySummariesRequest, context: _Context
    ) -> pb.GetDailySummariesResponse:
        query = validation.daily_summaries(request)
        token, side = await self._ready(request, context)
        page = await side.read_model.daily_summaries(query, permitted_accounts_regex())
        return pb.GetDailySummariesResponse(
            summaries=[messages.summary(row) for row in page.rows],
            **_page_fields(token, query.page, page),
        )

    @_unary
    async def GetProjectionStatus(
        self, request: pb.GetProjectionStatusRequest, context: _Context
    ) -> pb.GetProjectionStatusResponse:
        token, side = await self._ready(request, context)
        rows, snapshot = await side.read_model.checkpoint_rows()
        freshness = _fresh(token, snapshot)
        watermarks = await side.watermarks.observe(_WATERMARK_WAIT_SECONDS)
        checkpoints = {row.partition: row for row in rows}
        return pb.GetProjectionStatusResponse(
            partitions=[
                messages.partition_status(p, checkpoints.get(p), watermarks.get(p))
                for p in sorted(checkpoints.keys() | watermarks.keys())
            ],
            freshness=freshness,
        )

    @_streaming
    async def WatchAccount(
        self, request: pb.WatchAccountRequest, context: _Context
    ) -> AsyncIterator[pb.WatchAccountResponse]:
        account_id = validation.account_id(request.account_id)
        token, side = await self._ready(request, context)
        with side.watchers.slot():
            first = True
            async for update in follow(side.read_model, side.checkpoints, account_id):
                if first:
                    _check_covered(token, update.snapshot)
                    first = False
                opened = await side.owners.opened(update.account)
                yield messages.watch_update(dataclasses.replace(update, account=opened))

    async def _ready(
        self, request: _AsksConsistency, context: _Context
    ) -> tuple[ConsistencyToken | None, ReadSide]:
        """The request's consistency token, and the read side once the read model includes it
        (waiting within the deadline)."""
        token = validation.consistency_token(request.consistency_token)
        side = self.read_side
        if side is None:
            raise Unavailable("the query server is still connecting to the read model; retry")
        if token is not None:
            await side.token_waiter.wait(token, context.time_remaining())
        return token, side


class _AsksConsistency(Protocol):
    @property
    def consistency_token(self) -> str: ...


def _page_fields(token: ConsistencyToken | None, paging: Page, page: Rows[Any]) -> dict[str, Any]:
    """The reply's fields that every page has: where the next one starts, and how fresh it is."""
    return {
        "next_page_token": paging.token_after(page.next_after),
        "freshness": _fresh(token, page.snapshot),
    }


def _fresh(token: ConsistencyToken | None, snapshot: Snapshot) -> pb.Freshness:
    """How fresh an answer read from `snapshot` is, once checked to cover `token`."""
    _check_covered(token, snapshot)
    return messages.freshness(snapshot)


def _check_covered(token: ConsistencyToken | None, snapshot: Snapshot) -> None:
    # The wait guarantees this (checkpoints only move forward); checked so that a broken
    # guarantee shows as an error, never as a stale answer passed off as fresh.
    if token is not None and not token.covered_by(snapshot.checkpoints):
        raise Unavailable(
            "the read model went back behind the consistency token after reaching it "
            "(is it being rebuilt?); retry"
        )
