"""The batch benchmarks' pure parts: the requests they send, how they count answers, the lag's
slope, the ratios to the peer, and the profile's summary."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.batch_client import LoadRun, _count, deposits
from bench.peer import peer_environment
from bench.profile_batches import summarise
from bench.report import Report, Row
from bench.scenarios.batches import add_vs_peer
from bench.scenarios.sustained import lag_slope
from command_server import requests
from ledger.domain.commands import Deposit
from ledger.domain.validation import require_command_id, require_fields
from ledger.v1 import commands_pb2 as pb


def test_a_batch_holds_one_new_valid_deposit_per_account_as_the_server_reads_it() -> None:
    request = deposits(["bench-1", "bench-2", "bench-1"])
    commands = [requests.command_of(message) for message in request.commands]
    assert all(isinstance(c, Deposit) for c in commands)
    assert [c.account_id for c in commands if isinstance(c, Deposit)] == [
        "bench-1",
        "bench-2",
        "bench-1",
    ]
    assert len({c.command_id for c in commands}) == 3
    for command in commands:
        require_command_id(command.command_id, datetime.now(UTC), timedelta(seconds=60))
        require_fields(command)
    assert not request.atomic


def test_answers_are_counted_per_result_code() -> None:
    response = pb.ExecuteBatchResponse()
    for code in (0, 0, 9, 0, 14, 9):
        response.results.add(code=code)
    run = LoadRun()
    _count(run, response)
    assert (run.ok, run.failed) == (3, 3)
    assert run.errors == {"result code 9": 2, "result code 14": 1}


def test_the_lag_slope_is_how_fast_the_lag_grows() -> None:
    assert lag_slope([(t, 100.0 + 50 * t) for t in range(10)]) == pytest.approx(50.0)
    assert lag_slope([(t, 7.0) for t in range(10)]) == pytest.approx(0.0)
    assert math.isnan(lag_slope([(0.0, 1.0), (1.0, 2.0)]))


def test_every_commands_figure_is_set_against_the_peers_best() -> None:
    report = Report(mode="quick", machine={}, started_at="now")
    report.rows += [
        Row("batches", "peer (eventsourcing)", "sequential", {"commands_per_s": 100.0}),
        Row("batches", "peer (eventsourcing)", "16 threads", {"commands_per_s": 200.0}),
        Row("batches", "ledger", "100 x 4", {"commands_per_s": 5_000.0}),
        Row("get_accounts", "query server", "1,000 ids x 1", {"accounts_per_s": 9.0}),
    ]
    add_vs_peer(report)
    assert [row.metrics.get("vs_peer") for row in report.rows] == [0.5, 1.0, 25.0, None]


def test_the_peer_is_pointed_at_the_scratch_database() -> None:
    env = peer_environment("postgresql://postgres@127.0.0.1:5544/bench_peer_1")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("127.0.0.1", "5544")
    assert (env["POSTGRES_DBNAME"], env["POSTGRES_USER"]) == ("bench_peer_1", "postgres")


def test_a_profile_is_summarised_by_own_time_and_by_time_with_callees(tmp_path: Path) -> None:
    collapsed = tmp_path / "server.txt"
    collapsed.write_text("main;decide;fingerprint 6\nmain;decide 2\nmain;encode 2\n")
    lines = summarise(collapsed, top=2)
    assert lines[0] == "server.txt: 10 samples"
    assert lines[2:4] == ["     60.0%  fingerprint", "     20.0%  decide"]
    assert lines[5:7] == ["    100.0%  main", "     80.0%  decide"]
