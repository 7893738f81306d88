"""One grpc.aio server interceptor that authenticates and authorizes every call before its
servicer runs.

    grpc.aio.server(interceptors=[MetricsInterceptor(...), AuthInterceptor(verifier)])

Each method's handler is wrapped once and the wrapper reused (`ledger.handler_wrapping`), so
a call pays for a metadata lookup, a dictionary hit for an already verified token and the
policy check. The wrapper runs where the request message is at hand, so that the account a call
acts on can be checked. The principal is left in `current_principal` for the servicer (lists
narrowed to permitted accounts): grpc.aio runs each call in a task of its own, so it is the
call's alone. A refused call never reaches the servicer.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, NoReturn

import grpc

from ledger.auth.keys import KeysUnavailable
from ledger.auth.policy import PermissionDenied, Rule, is_open, rule_for
from ledger.auth.principal import Principal, current_principal
from ledger.auth.verification import TokenVerifier, Unauthenticated
from ledger.handler_wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrapped,
)

AUTHORIZATION = "authorization"


class AuthInterceptor(HandlerWrappingInterceptor):
    def __init__(self, verifier: TokenVerifier) -> None:
        super().__init__()
        self._verifier = verifier

    def wrap(self, method: str, handler: Handler) -> Handler:
        if is_open(method):
            return handler
        return _guarded(handler, _Gate(self._verifier, method, rule_for(method)))


class _Gate:
    """The checks of one method: who calls (the token), and whether they may (the rule)."""

    def __init__(self, verifier: TokenVerifier, method: str, rule: Rule | None) -> None:
        self._verifier = verifier
        self._method = method
        self._rule = rule

    async def admit(self, request: object, context: Context) -> Principal:
        """The caller's principal; aborts the call when it may not proceed."""
        try:
            principal = await self._verifier.principal(_authorization(context))
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
        return principal


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # abort always raises; this tells the type checker


def _authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            return value if isinstance(value, str) else None
    return None


def _guarded(handler: Handler, gate: _Gate) -> Handler:
    """`handler` with every call admitted by `gate` first."""
    behavior = behavior_of(handler)
    # A streamed request has no message to check before the servicer reads it: only the caller
    # is checked then (none of the Ledger's own methods stream requests).
    checks_request = not handler.request_streaming
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            checked = request if checks_request else None
            current_principal.set(await gate.admit(checked, context))
            # aclosing: a caller that hangs up closes the servicer's generator now.
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

        return rewrapped(handler, stream)

    async def call(request: Any, context: Context) -> Any:
        checked = request if checks_request else None
        current_principal.set(await gate.admit(checked, context))
        return await behavior(request, context)

    return rewrapped(handler, call)
