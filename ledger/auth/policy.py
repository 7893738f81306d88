"""Which calls a token may make: one table from RPC method to the scopes it needs (any one of
them) and the request field naming the account it acts on.

A method missing from the table is refused (deny by default), except the always-open services:
grpc.health.v1 (orchestrators probe without credentials) and server reflection (it describes
the public API, which is no secret, and lets grpcurl work without .proto files).
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def check(self, principal: Principal, request: object) -> None:
        """Raises PermissionDenied when `principal` may not make this call with `request`."""
        if self.scopes.isdisjoint(principal.scopes):
            needed = " or ".join(sorted(self.scopes))
            held = " ".join(sorted(principal.scopes)) or "none"
            raise PermissionDenied(f"this call needs the scope {needed}; the token has {held}")
        if self.account_field is None or principal.accounts is None:
            return
        account_id = getattr(request, self.account_field, "")
        # An empty id is the servicer's to refuse (or, for summaries, the whole permitted ledger).
        if account_id and not principal.may_act_on(account_id):
            shown = account_id if len(account_id) <= 80 else account_id[:80] + "..."
            raise PermissionDenied(
                f"the token may act on accounts matching {', '.join(principal.accounts)}; "
                f"{shown} is not one of them"
            )


def _rule(*scopes: str, account: str | None = "account_id") -> Rule:
    return Rule(frozenset(scopes), account)


POLICY: dict[str, Rule] = {
    _COMMANDS + "OpenAccount": _rule(WRITE),
    _COMMANDS + "Deposit": _rule(WRITE),
    _COMMANDS + "Withdraw": _rule(WRITE),
    # A transfer needs write access to the account it debits; any account may be credited.
    _COMMANDS + "Transfer": _rule(WRITE, account="from_account_id"),
    _COMMANDS + "CloseAccount": _rule(WRITE),
    # Erasure destroys data for good: administrators only.
    _COMMANDS + "EraseOwner": _rule(ADMIN),
    _QUERIES + "GetAccount": _rule(READ),
    _QUERIES + "ListAccounts": _rule(READ, account=None),
    _QUERIES + "ListTransactions": _rule(READ),
    _QUERIES + "GetBalanceAt": _rule(READ),
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
