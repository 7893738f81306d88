"""A tiny HTTP/1.1 server for the projector's health and status (stdlib asyncio only).

Routes are a table of path -> handler, so that a Prometheus `/metrics` route can be added
without touching the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 5.0
_MAX_HEADER_LINES = 100


class CannotServe(RuntimeError):
    """The endpoint's address cannot be listened on (in use, not ours)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: HTTPStatus, document: Mapping[str, Any]) -> Response:
        return cls(status, json.dumps(document, indent=2).encode("utf-8") + b"\n")


Handler = Callable[[], Awaitable[Response]]


class HttpEndpoint:
    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as error:
            raise CannotServe(f"cannot serve HTTP on {host}:{port}: {error}") from error

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(_read_request(reader), _REQUEST_TIMEOUT)
            response = await self._respond(method, path)
            head = (
                f"HTTP/1.1 {response.status.value} {response.status.phrase}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + (b"" if method == "HEAD" else response.body))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that hangs up or talks nonsense gets nothing
        finally:
            writer.close()

    async def _respond(self, method: str, path: str) -> Response:
        handler = self._routes.get(path.split("?", 1)[0])
        if handler is None:
            return Response.json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})
        if method not in ("GET", "HEAD"):
            return Response.json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed"})
        try:
            return await handler()
        except Exception as error:
            log.exception("handler for %s failed", path)
            return Response.json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(error)})


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of a request; its headers are read and ignored."""
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) != 3:
        raise ValueError("malformed request line")
    for _ in range(_MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            return request_line[0], request_line[1]
    raise ValueError("too many header lines")
