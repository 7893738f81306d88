"""The projector's tiny HTTP endpoint, over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from devstack.ports import free_port
from projector.http_endpoint import HttpEndpoint, Response


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    return raw


async def _get(port: int, request: bytes) -> tuple[int, bytes]:
    head, _, body = (await _exchange(port, request)).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_routes_answer_and_unknown_paths_are_404() -> None:
    async def ok() -> Response:
        return Response.json(HTTPStatus.OK, {"status": "ok"})

    async def broken() -> Response:
        raise RuntimeError("boom")

    endpoint = HttpEndpoint({"/healthz": ok, "/broken": broken})
    port = free_port()
    await endpoint.start("127.0.0.1", port)
    try:
        status, body = await _get(port, b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert (await _get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _get(port, b"POST /healthz HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await _get(port, b"HEAD /healthz HTTP/1.1\r\n\r\n")) == (200, b"")
        status, body = await _get(port, b"GET /broken HTTP/1.1\r\n\r\n")
        assert status == 500
        assert "boom" in json.loads(body)["error"]
        # Nonsense gets the connection closed, and the server keeps serving.
        assert await _exchange(port, b"garbage\r\n\r\n") == b""
        assert (await _get(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200
    finally:
        await endpoint.close()
