"""The fuzz builds requests for every RPC of both services: a new RPC must be added to it."""

from __future__ import annotations

import pytest

from tests.fuzz.requests import COMMANDS, QUERIES, command_requests, methods, query_requests


@pytest.mark.parametrize("hostile", [False, True])
def test_the_fuzz_builds_requests_for_every_rpc(hostile: bool) -> None:
    assert sorted(command_requests(hostile)) == sorted(methods(COMMANDS))
    assert sorted(query_requests(hostile)) == sorted(methods(QUERIES))
