"""Requests that cannot be decoded are answered INVALID_ARGUMENT, naming the message type.

grpc.aio answers a request its deserializer cannot parse (bytes that are not protobuf, or a
`string` field that is not UTF-8) with UNKNOWN: a client error reported as a server fault.
This interceptor's deserializer returns an `UndecodableRequest` instead of raising, and its
wrapper aborts such a call before any other wrapper (authorization reads the request) or the
servicer sees it. Only unary requests are decoded this way: no Ledger method streams requests,
and health and reflection keep gRPC's own handling.

    grpc.aio.server(interceptors=[MetricsInterceptor(...), RequestDecodingInterceptor(), ...])
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from ledger.handler_wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrapped,
)


@dataclass(frozen=True, slots=True)
class UndecodableRequest:
    """What the deserializer hands on in place of a request it could not parse."""

    message: str


class RequestDecodingInterceptor(HandlerWrappingInterceptor):
    def wrap(self, method: str, handler: Handler) -> Handler:
        deserializer = handler.request_deserializer
        if handler.request_streaming or deserializer is None:
            return handler
        return _decoding(handler, _tolerant(deserializer, _message_name(deserializer)))


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    """The protobuf message type a generated stub's deserializer (`Type.FromString`) makes."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


def _tolerant(deserializer: Callable[[bytes], Any], name: str) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as error:
            return UndecodableRequest(
                f"the request is not a valid {name}: not protobuf of that type, or a string "
                f"field is not UTF-8 ({error})"
            )

    return deserialize


async def _refuse(context: Context, request: UndecodableRequest) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
    raise AssertionError("abort returned")  # abort always raises; this tells the type checker


def _decoding(handler: Handler, deserializer: Callable[[bytes], Any]) -> Handler:
    """`handler` reading requests with `deserializer`, refusing what it could not decode."""
    behavior = behavior_of(handler)
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, UndecodableRequest):
                await _refuse(context, request)
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

        return rewrapped(handler, stream, deserializer)

    async def call(request: Any, context: Context) -> Any:
        if isinstance(request, UndecodableRequest):
            await _refuse(context, request)
        return await behavior(request, context)

    return rewrapped(handler, call, deserializer)
