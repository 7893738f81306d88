"""The authentication and authorization of every call, before its servicer runs: a `Gate` per
method, called by the server's one wrapper of that method (`ledger.call_wrapping`).

    remember_authorization(details)          # by the server's interceptor, for every call
    if not gate.admitted(request):           # a remembered token the rule permits: no await
        await gate.admit(request, context)   # verifies, or aborts the call with why not

The server's interceptor keeps each call's `authorization` value from the metadata gRPC has
already converted for it (asking the context converts it all again). The gate runs where the
request message is at hand, so that the account a call acts on can be checked. The principal
is left in `current_principal` for the servicer (lists narrowed to permitted accounts): grpc.aio
runs each call in a task of its own, so both variables are the call's alone. A refused call
never reaches the servicer.
"""

from __future__ import annotations

import contextvars
from typing import NoReturn

import grpc

from ledger.auth.keys import KeysUnavailable
from ledger.auth.policy import PermissionDenied, Rule, is_open, rule_for
from ledger.auth.principal import current_principal
from ledger.auth.verification import TokenVerifier, Unauthenticated
from ledger.handler_wrapping import Context

AUTHORIZATION = "authorization"

_call_authorization: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ledger_call_authorization", default=None
)


def remember_authorization(details: grpc.HandlerCallDetails) -> None:
    """Keep the call's `authorization` metadata value for its gate."""
    found: str | None = None
    for key, value in details.invocation_metadata or ():
        if key == AUTHORIZATION:
            found = value if isinstance(value, str) else None
            break
    _call_authorization.set(found)


def gate_for(verifier: TokenVerifier, method: str) -> Gate | None:
    """The gate of `method`; None for the always-open services (health, reflection)."""
    return None if is_open(method) else Gate(verifier, method, rule_for(method))


class Gate:
    """The checks of one method: who calls (the token), and whether they may (the rule)."""

    def __init__(self, verifier: TokenVerifier, method: str, rule: Rule | None) -> None:
        self._verifier = verifier
        self._method = method
        self._rule = rule

    def admitted(self, request: object) -> bool:
        """Whether the call may proceed on what is known already (a token verified before, a
        rule that permits the request); then its principal is set. False: `admit` decides."""
        principal = self._verifier.known(_call_authorization.get())
        if principal is None or self._rule is None:
            return False
        try:
            self._rule.check(principal, request)
        except PermissionDenied:
            return False
        current_principal.set(principal)
        return True

    async def admit(self, request: object, context: Context) -> None:
        """Set the caller's principal; aborts the call when it may not proceed."""
        try:
            principal = await self._verifier.principal(_call_authorization.get())
        except Unauthenticated as exc:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)
        except KeysUnavailable as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        if self._rule is None:
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{self._method} has no access rule, so no token may call it",
            )
        try:
            self._rule.check(principal, request)
        except PermissionDenied as exc:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, exc.message)
        current_principal.set(principal)


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # abort always raises; this tells the type checker
