"""What the client tests (Go, Python, TypeScript) share: running a client's program, and reading
what it wrote back through the servers' own stubs, as any other client would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import RunningLedger

RUN_TIMEOUT_S = 180


def json_report(argv: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the program printed, a JSON object; it must have exited 0."""
    result = subprocess.run(
        list(argv),
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


async def movements_of(
    ledger: RunningLedger, account_id: str, consistency_token: str
) -> list[tuple[str, str, str]]:
    """The account's movements as (command_id, amount, currency), read with the reader token once
    the read model covers `consistency_token`."""
    assert ledger.credentials is not None
    async with ledger.query_server.channel(ledger.credentials.token("reader")) as channel:
        answer = await pb_grpc.QueryServiceStub(channel).ListTransactions(
            pb.ListTransactionsRequest(account_id=account_id, consistency_token=consistency_token),
            timeout=10,
        )
    return [(t.command_id, t.amount, t.currency) for t in answer.transactions]
