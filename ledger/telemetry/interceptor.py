"""Per-method call counts, status codes and latency for any grpc.aio server.

    server = grpc.aio.server(interceptors=[MetricsInterceptor(GrpcServerMetrics.create())])

Each method's handler is wrapped once and the wrapper reused, with its metric children resolved
up front, so a call pays for a clock read and two metric updates, not for label lookups.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import grpc

from ledger.handler_wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrapped,
)
from ledger.telemetry.metrics import GrpcServerMetrics


class MetricsInterceptor(HandlerWrappingInterceptor):
    def __init__(self, metrics: GrpcServerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, method: str, handler: Handler) -> Handler:
        return _observed(handler, _MethodMetrics(self._metrics, method, handler))


class _MethodMetrics:
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


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the caller gets: set by the servicer (abort, set_code), or implied."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away or its deadline passed
    return grpc.StatusCode.UNKNOWN  # what gRPC answers for an exception a servicer let escape


def _observed(handler: Handler, metrics: _MethodMetrics) -> Handler:
    """`handler` with each call counted and timed."""
    behavior = behavior_of(handler)
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            began = time.perf_counter()
            error: BaseException | None = None
            try:
                # aclosing: a caller that hangs up closes the servicer's generator now, not at GC.
                async with aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.record(_final_code(context, error), began)

        observed: Callable[..., Any] = stream
    elif inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Context) -> Any:
            began = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.record(_final_code(context, error), began)

        observed = call
    else:
        return handler  # a synchronous servicer (run in a thread pool): not ours to time
    return rewrapped(handler, observed)
