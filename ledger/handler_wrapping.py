"""How a Ledger gRPC server puts its per-call concerns around a servicer: one wrapper per method,
built the first time the method is called and reused, run by one interceptor.

grpc.aio runs each interceptor's `intercept_service`, and each wrapper a handler is given, as a
coroutine of its own on every call, and `context.invocation_metadata()` converts the call's
metadata to Python objects again each time it is asked (a bearer token is ~600 bytes). So a
server has one `MethodWrapping` interceptor: it hands back the method's wrapper for a dictionary
hit, and gives `each_call` the metadata gRPC has already converted for the interceptor
(`ledger.call_wrapping` assembles the wrapper; docs/performance.md has the measurements).

    grpc.aio.server(interceptors=[MethodWrapping(lambda method, handler: ..., each_call)])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# Strings: the stubs make these generic, the runtime classes are not.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
Wrap: TypeAlias = "Callable[[str, Handler], Handler]"

_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class MethodWrapping(grpc.aio.ServerInterceptor):
    """Each known method's handler wrapped once by `wrap` (method, handler -> handler); every
    call's details given to `each_call`, when set, before its wrapper runs (in the call's task,
    so that a context variable it sets is the call's own)."""

    def __init__(
        self, wrap: Wrap, each_call: Callable[[grpc.HandlerCallDetails], None] | None = None
    ) -> None:
        self._wrap = wrap
        self._each_call = each_call
        # method -> (the handler we wrapped, the wrapper)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED on its own
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = self._wrapped[method] = (handler, self._wrap(method, handler))
        if self._each_call is not None:
            self._each_call(handler_call_details)
        return known[1]


def behavior_of(handler: Handler) -> Any:
    """The servicer's function behind `handler`."""
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


def rewrapped(
    handler: Handler,
    behavior: Callable[..., Any],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler of the same kind and serializers as `handler` that runs `behavior` (and reads
    requests with `request_deserializer` when given)."""
    factory = _HANDLER_FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
