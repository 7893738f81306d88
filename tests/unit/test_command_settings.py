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


def shard(index: int, count: int, producers: int = 2) -> Settings:
    return Settings.from_env(
        {
            "LEDGER_SHARD_INDEX": str(index),
            "LEDGER_SHARD_COUNT": str(count),
            "LEDGER_PRODUCERS": str(producers),
        }
    )


@pytest.mark.parametrize(("index", "count"), [(0, 1), (0, 2), (1, 2), (2, 3), (1, 4)])
def test_a_shard_fences_every_id_any_configuration_could_write_its_partitions_with(
    index: int, count: int
) -> None:
    partitions = 6
    fenced = set(shard(index, count).fencing_ids(partitions))
    owned = [p for p in range(partitions) if p % count == index]
    for other_count in range(1, partitions + 1):
        for producers in range(1, 5):
            for p in owned:
                writer = shard(p % other_count, other_count, producers)
                assert set(writer.transactional_ids) <= fenced, (other_count, producers, p)


def test_a_shard_never_fences_its_siblings() -> None:
    siblings = [shard(i, 3) for i in range(3)]
    for me in siblings:
        fenced = set(me.fencing_ids(6))
        for sibling in siblings:
            if sibling is not me:
                assert not fenced & set(sibling.transactional_ids)


def test_replication_minimums_default_to_one_broker_and_are_read_by_name() -> None:
    assert (Settings().min_replication_factor, Settings().min_insync_replicas) == (1, 1)
    settings = Settings.from_env(
        {"LEDGER_MIN_REPLICATION_FACTOR": "3", "LEDGER_MIN_INSYNC_REPLICAS": "2"}
    )
    assert (settings.min_replication_factor, settings.min_insync_replicas) == (3, 2)
    with pytest.raises(SettingsError, match="LEDGER_MIN_INSYNC_REPLICAS"):
        Settings.from_env({"LEDGER_MIN_INSYNC_REPLICAS": "0"})


@pytest.mark.parametrize(
    ("variable", "field", "default"),
    [
        ("LEDGER_DEDUPE_CHUNK_ENTRIES", "dedupe_chunk_entries", 1_000),
        ("LEDGER_COMMAND_ID_MAX_SKEW_SECONDS", "command_id_max_skew_seconds", 60),
    ],
)
def test_dedupe_chunks_and_command_id_skew_are_read_by_name(
    variable: str, field: str, default: float
) -> None:
    assert getattr(Settings(), field) == default
    assert getattr(Settings.from_env({variable: "2"}), field) == 2
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: "-1"})


def test_the_snapshot_floor_in_seconds_defaults_to_two_and_is_checked_by_name() -> None:
    assert Settings.from_env({}).snapshot_min_seconds == 2.0
    assert Settings.from_env({"LEDGER_SNAPSHOT_MIN_SECONDS": "0"}).snapshot_min_seconds == 0.0
    with pytest.raises(SettingsError, match="LEDGER_SNAPSHOT_MIN_SECONDS"):
        Settings.from_env({"LEDGER_SNAPSHOT_MIN_SECONDS": "-1"})


def test_a_second_batch_goes_ahead_at_a_full_batch_unless_told_otherwise() -> None:
    assert Settings.from_env({}).batch_ahead_commands == 1000
    assert Settings.from_env({"LEDGER_BATCH_MAX_COMMANDS": "10"}).batch_ahead_commands == 10
    told = Settings.from_env({"LEDGER_BATCH_AHEAD_COMMANDS": "100"})
    assert (told.batch_ahead_commands, told.batch_max_commands) == (100, 1000)
    with pytest.raises(SettingsError, match="LEDGER_BATCH_AHEAD_COMMANDS"):
        Settings.from_env({"LEDGER_BATCH_AHEAD_COMMANDS": "0"})
