"""One grpc.aio server interceptor that authenticates and authorizes every call before its
servicer runs.

    grpc.aio.server(interceptors=[MetricsInterceptor(...), AuthInterceptor(verifier)])

Each method's handler is wrapped once and the wrapper reused (as the metrics interceptor does),
so a call pays for a metadata lookup, a dictionary hit for an already verified token and the
policy check. The wrapper runs where the request message is at hand, so that the account a call
acts on can be checked. The principal is left in `current_principal` for the servicer (lists
narrowed to permitted accounts): grpc.aio runs each call in a task of its own, so it is the
call's alone. A refused call never reaches the servicer.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, NoReturn, TypeAlias

import grpc

from ledger.auth.keys import KeysUnavailable
from ledger.auth.policy import PermissionDenied, Rule, is_open, rule_for
from ledger.auth.principal import Principal, current_principal
from ledger.auth.verification import TokenVerifier, Unauthenticated

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]]"
_Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

AUTHORIZATION = "authorization"


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        # method -> (the handler we wrapped, the wrapper)
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open(method):
            return handler  # unknown methods: gRPC answers UNIMPLEMENTED on its own
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapper = _guarded(handler, _Gate(self._verifier, method, rule_for(method)))
        self._wrapped[method] = (handler, wrapper)
        return wrapper


class _Gate:
    """The checks of one method: who calls (the token), and whether they may (the rule)."""

    def __init__(self, verifier: TokenVerifier, method: str, rule: Rule | None) -> None:
        self._verifier = verifier
        self._method = method
        self._rule = rule

    async def admit(self, request: object, context: _Context) -> Principal:
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


async def _abort(context: _Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # abort always raises; this tells the type checker


def _authorization(context: _Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            return value if isinstance(value, str) else None
    return None


def _guarded(handler: _Handler, gate: _Gate) -> _Handler:
    """`handler` with every call admitted by `gate` first."""
    behavior: Any = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    if handler.request_streaming:
        # No request message to check before the servicer reads it: only the caller is checked
        # (none of the Ledger's own methods stream requests).
        if inspect.isasyncgenfunction(behavior):

            async def stream_in_out(requests: Any, context: _Context) -> AsyncIterator[Any]:
                current_principal.set(await gate.admit(None, context))
                async with aclosing(behavior(requests, context)) as responses:
                    async for response in responses:
                        yield response

            guarded: Callable[..., Any] = stream_in_out
        else:

            async def stream_in(requests: Any, context: _Context) -> Any:
                current_principal.set(await gate.admit(None, context))
                return await behavior(requests, context)

            guarded = stream_in
    elif inspect.isasyncgenfunction(behavior):

        async def stream_out(request: Any, context: _Context) -> AsyncIterator[Any]:
            current_principal.set(await gate.admit(request, context))
            # aclosing: a caller that hangs up closes the servicer's generator now.
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

        guarded = stream_out
    else:

        async def call(request: Any, context: _Context) -> Any:
            current_principal.set(await gate.admit(request, context))
            return await behavior(request, context)

        guarded = call
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(
        guarded,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
