"""The gRPC servers' limits: read from LEDGER_GRPC_*, turned into grpc.aio options, and the
command queue's bound from the command server's settings."""

from __future__ import annotations

import dataclasses

import pytest

from command_server.settings import MAX_RECEIVE_BYTES
from command_server.settings import Settings as CommandSettings
from ledger.environment import SettingsError
from ledger.server_limits import ServerLimits, server_limits
from query_server.settings import Settings as QuerySettings


def test_the_defaults_bound_every_resource_a_client_can_take() -> None:
    options = dict(server_limits({}).options())

    assert options["grpc.max_receive_message_length"] == 256 * 1024
    assert options["grpc.max_send_message_length"] == 4 * 1024 * 1024
    assert options["grpc.max_concurrent_streams"] == 1000
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.http2.max_ping_strikes"] == 2
    assert options["grpc.max_connection_age_ms"] == 1_800_000
    assert options["grpc.max_connection_age_grace_ms"] == 30_000
    assert options["grpc.max_connection_idle_ms"] == 300_000


def test_variables_override_the_defaults_and_zero_ages_mean_never() -> None:
    limits = server_limits(
        {
            "LEDGER_GRPC_MAX_RECEIVE_BYTES": "4096",
            "LEDGER_GRPC_MAX_CONCURRENT_CALLS": "7",
            "LEDGER_GRPC_KEEPALIVE_SECONDS": "0.5",
            "LEDGER_GRPC_MAX_CONNECTION_AGE_SECONDS": "0",
            "LEDGER_GRPC_MAX_CONNECTION_IDLE_SECONDS": "0",
        }
    )
    options = dict(limits.options())

    assert limits.max_concurrent_calls == 7
    assert options["grpc.max_receive_message_length"] == 4096
    assert options["grpc.keepalive_time_ms"] == 500
    assert "grpc.max_connection_age_ms" not in options
    assert "grpc.max_connection_idle_ms" not in options


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEDGER_GRPC_KEEPALIVE_SECONDS", "0"),
        ("LEDGER_GRPC_MAX_CONCURRENT_CALLS", "0"),
        ("LEDGER_GRPC_MAX_RECEIVE_BYTES", "many"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        server_limits({name: value})


def test_both_servers_read_the_limits() -> None:
    env = {"LEDGER_GRPC_MAX_STREAMS_PER_CONNECTION": "3"}
    expected = ServerLimits(max_streams_per_connection=3)

    # The command server's own default receive limit holds a full ExecuteBatch.
    assert CommandSettings.from_env(env).server_limits == dataclasses.replace(
        expected, max_receive_bytes=MAX_RECEIVE_BYTES
    )
    assert QuerySettings.from_env(env).server_limits == expected


def test_the_command_servers_receive_limit_is_still_read_from_the_variable() -> None:
    env = {"LEDGER_GRPC_MAX_RECEIVE_BYTES": "4096"}

    assert CommandSettings.from_env(env).server_limits.max_receive_bytes == 4096


def test_the_command_queue_holds_four_batches_unless_told_otherwise() -> None:
    assert CommandSettings.from_env({}).queue_max_commands == 4000
    assert CommandSettings.from_env({"LEDGER_BATCH_MAX_COMMANDS": "10"}).queue_max_commands == 40
    explicit = CommandSettings.from_env({"LEDGER_COMMAND_QUEUE_MAX": "5"})
    assert explicit.queue_max_commands == 5
    with pytest.raises(SettingsError, match="LEDGER_COMMAND_QUEUE_MAX"):
        CommandSettings.from_env({"LEDGER_COMMAND_QUEUE_MAX": "0"})
