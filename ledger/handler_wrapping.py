"""What the Ledger's grpc.aio server interceptors share: each method's handler is wrapped once
and the wrapper reused, and a wrapper is a handler like the one it wraps (same kind, same
serializers) around another function.

    class MyInterceptor(HandlerWrappingInterceptor):
        def wrap(self, method: str, handler: Handler) -> Handler:
            return rewrapped(handler, my_function_calling(behavior_of(handler)))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# Strings: the stubs make these generic, the runtime classes are not.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class HandlerWrappingInterceptor(grpc.aio.ServerInterceptor, ABC):
    """Wraps each known method's handler with `wrap`, once: a call then pays for a dictionary
    hit, not for building a handler."""

    def __init__(self) -> None:
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
        if known is not None and known[0] is handler:
            return known[1]
        wrapper = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapper)
        return wrapper

    @abstractmethod
    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` of `method` as it should run (it may be returned as it is)."""


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
