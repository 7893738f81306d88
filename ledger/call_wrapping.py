"""The one wrapper of each method of a Ledger gRPC server: metrics, request decoding, and
authentication and authorization, in one coroutine layer around the servicer.

Each concern keeps its own module, as functions this wrapper calls in a fixed order: the call
is timed and counted with the status its caller gets (`ledger.telemetry.interceptor`, outermost,
so that refused calls are counted too), an undecodable request is refused
(`ledger.request_decoding`, before authorization reads the request), and the caller is admitted
(`ledger.auth.interceptor`) before the servicer runs. Everything a method needs (its metric
children, its access rule, its deserializer) is resolved once, when its wrapper is built; a
call whose token was verified before takes no await besides the servicer's.

    grpc.aio.server(interceptors=[method_wrapping(metrics, verifier)])
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from grpc import StatusCode

from ledger.auth.interceptor import Gate, gate_for, remember_authorization
from ledger.auth.verification import TokenVerifier
from ledger.handler_wrapping import Context, Handler, MethodWrapping, behavior_of, rewrapped
from ledger.request_decoding import UndecodableRequest, refuse, tolerant_deserializer
from ledger.telemetry.interceptor import MethodMetrics, final_code
from ledger.telemetry.metrics import GrpcServerMetrics


def method_wrapping(metrics: GrpcServerMetrics, verifier: TokenVerifier | None) -> MethodWrapping:
    """The interceptor of a server that counts every call in `metrics` and, with a `verifier`,
    admits only the calls whose token it verifies and the policy permits (None: no tokens,
    `LEDGER_INSECURE=1`)."""

    def wrap(method: str, handler: Handler) -> Handler:
        gate = None if verifier is None else gate_for(verifier, method)
        return wrapped(handler, MethodMetrics(metrics, method, handler), gate)

    return MethodWrapping(wrap, None if verifier is None else remember_authorization)


class _Timed:
    """A call's time and final status recorded when it ends, however it ends."""

    def __init__(self, record: Callable[[StatusCode, float], None], context: Context) -> None:
        self._record = record
        self._context = context
        self._began = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self._record(final_code(self._context, error), self._began)


class _Entry:
    """What a call must pass before its servicer runs: a decodable request, an admitted caller."""

    def __init__(self, decodes: bool, gate: Gate | None, checks_request: bool) -> None:
        self._decodes = decodes
        self._gate = gate
        # A streamed request has no message to check before the servicer reads it: only the
        # caller is checked then (none of the Ledger's own methods stream requests).
        self._checks_request = checks_request

    def passes(self, request: Any) -> bool:
        """Whether the call may go on without waiting for anything (the common case)."""
        if self._decodes and type(request) is UndecodableRequest:
            return False
        gate = self._gate
        return gate is None or gate.admitted(request if self._checks_request else None)

    async def settle(self, request: Any, context: Context) -> None:
        """Let the call go on or abort it, for a call that did not pass at once."""
        if self._decodes and type(request) is UndecodableRequest:
            await refuse(context, request)
        if self._gate is not None:
            await self._gate.admit(request if self._checks_request else None, context)


def wrapped(handler: Handler, metrics: MethodMetrics, gate: Gate | None) -> Handler:
    """`handler` with each call counted and timed, its request decoded, its caller admitted by
    `gate` (None: every caller is)."""
    behavior = behavior_of(handler)
    deserializer = tolerant_deserializer(handler)
    entry = _Entry(deserializer is not None, gate, not handler.request_streaming)
    record = metrics.record
    observed: Callable[..., Any]
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            with _Timed(record, context):
                if not entry.passes(request):
                    await entry.settle(request, context)
                # aclosing: a caller that hangs up closes the servicer's generator now, not at GC.
                async with aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response

        observed = stream
    elif inspect.iscoroutinefunction(behavior):
        # The same as `_Timed` spelled out: unary calls are the many, and this spares each an
        # object and two method calls.
        async def call(request: Any, context: Context) -> Any:
            began = time.perf_counter()
            error: BaseException | None = None
            try:
                if not entry.passes(request):
                    await entry.settle(request, context)
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                record(final_code(context, error), began)

        observed = call
    elif gate is None:
        return handler  # a synchronous servicer (run in a thread pool): not ours to time
    else:
        # It could not be awaited behind its gate, and must not run without one.
        raise TypeError(f"{behavior!r} is not a coroutine or async generator function")
    return rewrapped(handler, observed, deserializer)
