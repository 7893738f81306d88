"""Which calls a token may make: one table from RPC method to the scopes it needs (any one of
them) and the request field naming the account it acts on.

A method missing from the table is refused (deny by default), except the always-open services:
grpc.health.v1 (orchestrators probe without credentials) and server reflection (it describes
the public API, which is no secret, and lets grpcurl work without .proto files).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ledger.auth.principal import Principal

WRITE = "ledger:write"
READ = "ledger:read"
ADMIN = "ledger:admin"

_COMMANDS = "/ledger.v1.CommandService/"
_QUERIES = "/ledger.v1.QueryService/"

OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class PermissionDenied(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Rule:
    scopes: frozenset[str]
    # The request field holding the account the call acts on; None: no single account (lists
    # are narrowed to the permitted accounts by the query server itself).
    account_field: str | None
    # For a request acting on several accounts (a batch): every account it acts on.
    accounts: Callable[[Any], Iterable[str]] | None = None
    # Whether the call reads the whole ledger at once (totals no list can narrow): a token
    # restricted to some accounts may not make it.
    whole_ledger: bool = False

    def check(self, principal: Principal, request: object) -> None:
        """Raises PermissionDenied when `principal` may not make this call with `request`."""
        if self.scopes.isdisjoint(principal.scopes):
            needed = " or ".join(sorted(self.scopes))
            held = " ".join(sorted(principal.scopes)) or "none"
            raise PermissionDenied(f"this call needs the scope {needed}; the token has {held}")
        if self.whole_ledger and principal.accounts is not None:
            raise PermissionDenied(
                "this call reads totals of the whole ledger; the token may only see accounts "
                f"matching {', '.join(principal.accounts)}: use a token without that restriction"
            )
        if principal.accounts is None or request is None:
            return
        if self.accounts is not None:
            for account_id in self.accounts(request):
                _require_account(principal, account_id)
        elif self.account_field is not None:
            _require_account(principal, getattr(request, self.account_field, ""))


def _require_account(principal: Principal, account_id: str) -> None:
    # An empty id is the servicer's to refuse (or, for summaries, the whole permitted ledger).
    if account_id and not principal.may_act_on(account_id):
        patterns = ", ".join(principal.accounts or ())
        shown = account_id if len(account_id) <= 80 else account_id[:80] + "..."
        raise PermissionDenied(
            f"the token may act on accounts matching {patterns}; {shown} is not one of them"
        )


# The field of each request a batch's `Command` may hold naming the account it debits or
# changes (a transfer may credit any account, as the unary Transfer).
_ACTED_ON = {
    "open_account": "account_id",
    "deposit": "account_id",
    "withdraw": "account_id",
    "transfer": "from_account_id",
    "close_account": "account_id",
}


def _batch_accounts(request: Any) -> Iterable[str]:
    """Every account an ExecuteBatchRequest debits or changes."""
    for command in request.commands:
        kind = command.WhichOneof("command")
        if kind is not None:
            yield getattr(getattr(command, kind), _ACTED_ON[kind])


def _requested_accounts(request: Any) -> Iterable[str]:
    """Every account a GetAccountsRequest names."""
    yield from request.account_ids


def _rule(*scopes: str, account: str | None = "account_id", whole_ledger: bool = False) -> Rule:
    return Rule(frozenset(scopes), account, whole_ledger=whole_ledger)


POLICY: dict[str, Rule] = {
    _COMMANDS + "OpenAccount": _rule(WRITE),
    _COMMANDS + "Deposit": _rule(WRITE),
    _COMMANDS + "Withdraw": _rule(WRITE),
    # A transfer needs write access to the account it debits; any account may be credited.
    _COMMANDS + "Transfer": _rule(WRITE, account="from_account_id"),
    _COMMANDS + "CloseAccount": _rule(WRITE),
    # Write access to every account the batch debits or changes, as its unary calls would need.
    _COMMANDS + "ExecuteBatch": Rule(frozenset({WRITE}), None, _batch_accounts),
    # Erasure destroys data for good: administrators only.
    _COMMANDS + "EraseOwner": _rule(ADMIN),
    _QUERIES + "GetAccount": _rule(READ),
    # Every id must be permitted: whether an account one may not read exists is not told.
    _QUERIES + "GetAccounts": Rule(frozenset({READ}), None, _requested_accounts),
    _QUERIES + "ListAccounts": _rule(READ, account=None),
    _QUERIES + "ListTransactions": _rule(READ),
    _QUERIES + "GetBalanceAt": _rule(READ),
    # Every account's balance at an instant, narrowed to permitted accounts.
    _QUERIES + "ListBalancesAt": _rule(READ, account=None),
    _QUERIES + "GetTrialBalance": _rule(READ, account=None, whole_ledger=True),
    # The request names no account: the servicer, once it has read the transfer, refuses a
    # token that may read neither the debited nor the credited account.
    _QUERIES + "GetTransfer": _rule(READ, account=None),
    # Without an account_id: the summaries of the whole ledger, narrowed to permitted accounts.
    _QUERIES + "GetDailySummaries": _rule(READ),
    _QUERIES + "GetProjectionStatus": _rule(READ, ADMIN, account=None),
    _QUERIES + "WatchAccount": _rule(READ),
}


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)


def rule_for(method: str) -> Rule | None:
    """The rule for `method` (a full method name, "/package.Service/Method"); None: refused."""
    return POLICY.get(method)
