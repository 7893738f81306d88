"""Per-method call counts, status codes and latency for any grpc.aio server.

    server = grpc.aio.server(interceptors=[MetricsInterceptor(GrpcServerMetrics.create())])

Each method's handler is wrapped once and the wrapper reused, with its metric children resolved
up front, so a call pays for a clock read and two metric updates, not for label lookups.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeAlias

import grpc

from ledger.telemetry.metrics import GrpcServerMetrics

# Strings: the stubs make these generic, the runtime classes are not.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]]"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics
        # method -> (the handler we wrapped, the wrapper)
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED on its own
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapper = _observed(handler, _MethodMetrics(self._metrics, method, handler))
        self._wrapped[method] = (handler, wrapper)
        return wrapper


class _MethodMetrics:
    """The metric children of one method, so that a call touches no label dictionaries."""

    def __init__(self, metrics: GrpcServerMetrics, method: str, handler: _Handler) -> None:
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


def _type_of(handler: _Handler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _final_code(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    """The status the caller gets: set by the servicer (abort, set_code), or implied."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away or its deadline passed
    return grpc.StatusCode.UNKNOWN  # what gRPC answers for an exception a servicer let escape


def _observed(handler: _Handler, metrics: _MethodMetrics) -> _Handler:
    """`handler` with each call counted and timed."""
    behavior: Any = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    if inspect.isasyncgenfunction(behavior):

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
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

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
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
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(
        observed,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
