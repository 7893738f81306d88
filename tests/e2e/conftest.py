"""Fixtures of the end-to-end tests: the three Ledger processes, once per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devstack.stack import LocalStack
from tests.e2e.running_ledger import RunningLedger, running_ledger


@pytest.fixture(scope="module")
async def ledger(
    request: pytest.FixtureRequest, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningLedger]:
    """Command server, projector and query server for the module, with the module's
    `LEDGER_ENV` (if it has one) added to their environment; with TLS and tokens if the module
    sets `LEDGER_SECURE = True`."""
    module = request.module
    extra_env: dict[str, str] = getattr(module, "LEDGER_ENV", {})
    secure: bool = getattr(module, "LEDGER_SECURE", False)
    data_dir = tmp_path_factory.mktemp(module.__name__.rpartition(".")[2])
    async with running_ledger(stack, data_dir, extra_env=extra_env, secure=secure) as running:
        yield running
