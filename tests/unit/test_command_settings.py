"""The command server's settings: the shard's transactional ids and their bounds."""

from __future__ import annotations

import pytest

from command_server.settings import Settings
from ledger.environment import SettingsError


def test_the_first_producer_keeps_the_shards_own_id() -> None:
    settings = Settings.from_env({"LEDGER_SHARD_INDEX": "1", "LEDGER_SHARD_COUNT": "3"})
    assert settings.transactional_ids == ("ledger-command-1-of-3", "ledger-command-1-of-3.1")


def test_one_producer_is_the_designs_single_id() -> None:
    settings = Settings.from_env({"LEDGER_PRODUCERS": "1"})
    assert settings.transactional_ids == ("ledger-command-0-of-1",)


@pytest.mark.parametrize("value", ["0", "5", "two"])
def test_producers_out_of_bounds_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="LEDGER_PRODUCERS"):
        Settings.from_env({"LEDGER_PRODUCERS": value})


def test_a_ledger_on_another_topic_has_ids_of_its_own() -> None:
    settings = Settings.from_env({"LEDGER_TOPIC": "staging_events", "LEDGER_PRODUCERS": "1"})
    assert settings.transactional_ids == ("ledger-command-staging_events-0-of-1",)
