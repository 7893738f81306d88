"""Per-method call counts, status codes and latency for any grpc.aio server, recorded by the
server's one wrapper of each method (`ledger.call_wrapping`).

    metrics = MethodMetrics(GrpcServerMetrics.create(), method, handler)  # once per method
    began = time.perf_counter()
    ...  # the call
    metrics.record(final_code(context, error), began)

A method's metric children are resolved when its wrapper is built, so a call pays for a clock
read and two metric updates, not for label lookups.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from ledger.handler_wrapping import Context, Handler
from ledger.telemetry.metrics import GrpcServerMetrics


class MethodMetrics:
    """The metric children of one method, so that a call touches no label dictionaries."""

    def __init__(self, metrics: GrpcServerMetrics, method: str, handler: Handler) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = (_type_of(handler), service, name)
        self._handled = metrics.handled
        self._by_code: dict[grpc.StatusCode, Any] = {}
        self._seconds = metrics.handling_seconds.labels(*self._labels)

    def record(self, code: grpc.StatusCode, began: float) -> None:
        self._seconds.observe(time.perf_counter() - began)
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._handled.labels(*self._labels, code.name)
        counter.inc()


def _type_of(handler: Handler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the caller gets: set by the servicer (abort, set_code), or implied."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away or its deadline passed
    return grpc.StatusCode.UNKNOWN  # what gRPC answers for an exception a servicer let escape
