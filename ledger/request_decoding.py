"""Requests that cannot be decoded are answered INVALID_ARGUMENT, naming the message type.

grpc.aio answers a request its deserializer cannot parse (bytes that are not protobuf, or a
`string` field that is not UTF-8) with UNKNOWN: a client error reported as a server fault.
`tolerant_deserializer` returns an `UndecodableRequest` instead of raising, and the server's
wrapper of each method (`ledger.call_wrapping`) refuses such a call with `refuse` before
authorization reads the request or the servicer sees it. Only unary requests are decoded this
way: no Ledger method streams requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from ledger.handler_wrapping import Context, Handler


@dataclass(frozen=True, slots=True)
class UndecodableRequest:
    """What the deserializer hands on in place of a request it could not parse."""

    message: str


def tolerant_deserializer(handler: Handler) -> Callable[[bytes], Any] | None:
    """`handler`'s deserializer, handing on an `UndecodableRequest` where it would raise; None
    when `handler` streams requests or has no deserializer (gRPC's own handling stays)."""
    deserializer = handler.request_deserializer
    if handler.request_streaming or deserializer is None:
        return None
    name = _message_name(deserializer)

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as error:
            return UndecodableRequest(
                f"the request is not a valid {name}: not protobuf of that type, or a string "
                f"field is not UTF-8 ({error})"
            )

    return deserialize


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    """The protobuf message type a generated stub's deserializer (`Type.FromString`) makes."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


async def refuse(context: Context, request: UndecodableRequest) -> NoReturn:
    """Answer the call whose request could not be decoded."""
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
    raise AssertionError("abort returned")  # abort always raises; this tells the type checker
