"""The settings readers: defaults for unset or empty variables, errors that name the variable."""

from __future__ import annotations

import pytest

from ledger.environment import (
    HostPort,
    SettingsError,
    env_host_port,
    env_int,
    env_seconds,
    env_text,
)


def test_an_unset_or_empty_variable_takes_the_default() -> None:
    for env in ({}, {"X": ""}):
        assert env_text(env, "X", "default") == "default"
        assert env_int(env, "X", 7) == 7
        assert env_seconds(env, "X", 2.5) == 2.5
        assert env_host_port(env, "X", HostPort("h", 1)) == HostPort("h", 1)


def test_set_variables_are_read() -> None:
    env = {"T": "text", "I": "12", "S": "0.25", "A": "[::1]:9000"}
    assert env_text(env, "T", "") == "text"
    assert env_int(env, "I", 0, minimum=1, maximum=12) == 12
    assert env_seconds(env, "S", 1.0) == 0.25
    assert env_host_port(env, "A", HostPort("h", 1)) == HostPort("[::1]", 9000)
    assert str(HostPort("[::1]", 9000)) == "[::1]:9000"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("many", "LEDGER_N must be an integer, got 'many'"),
        ("1.5", "LEDGER_N must be an integer"),
        ("0", "LEDGER_N must be at least 1, got 0"),
        ("5", "LEDGER_N must be at most 4, got 5"),
    ],
)
def test_integers_out_of_bounds_are_refused_by_name(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        env_int({"LEDGER_N": value}, "LEDGER_N", 2, minimum=1, maximum=4)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "must be a number of seconds"),
        ("-1", "must be a non-negative number of seconds"),
        ("inf", "must be a non-negative number of seconds"),
        ("nan", "must be a non-negative number of seconds"),
    ],
)
def test_seconds_must_be_finite_and_not_negative(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"LEDGER_WAIT {message}"):
        env_seconds({"LEDGER_WAIT": value}, "LEDGER_WAIT", 1.0)


@pytest.mark.parametrize("value", ["9464", ":9464", "host:", "host:port", "host:0", "host:65536"])
def test_an_address_needs_a_host_and_a_port_in_range(value: str) -> None:
    with pytest.raises(SettingsError, match="LEDGER_HTTP must be host:port"):
        env_host_port({"LEDGER_HTTP": value}, "LEDGER_HTTP", HostPort("h", 1))
