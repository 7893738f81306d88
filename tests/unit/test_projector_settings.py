"""The projector's configuration from the environment."""

from __future__ import annotations

import pytest

from projector.settings import HostPort, Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.topic == "account_events"
    assert settings.dead_letter_topic == "account_events.dlq"
    assert settings.group_id == "read_model"
    assert settings.schema == "ledger"
    assert str(settings.http) == "127.0.0.1:9464"
    assert settings.batch_max_events == 5000
    assert settings.session_timeout_ms == 6000
    assert settings.workers == 1


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": "k:1",
            "LEDGER_SCHEMA_REGISTRY_URL": "http://r",
            "LEDGER_DATABASE_URL": "postgresql://d/x",
            "LEDGER_TOPIC": "events",
            "LEDGER_PROJECTOR_HTTP": "0.0.0.0:8000",
            "LEDGER_PROJECTOR_BATCH": "100",
            "LEDGER_PROJECTOR_GROUP": "g",
            "LEDGER_PROJECTOR_SESSION_TIMEOUT_MS": "6000",
            "LEDGER_PROJECTOR_WORKERS": "3",
        }
    )
    assert (settings.kafka_bootstrap, settings.registry.url, settings.database.url) == (
        "k:1",
        "http://r",
        "postgresql://d/x",
    )
    assert (settings.topic, settings.dead_letter_topic) == ("events", "events.dlq")
    assert settings.http == HostPort("0.0.0.0", 8000)
    assert (settings.batch_max_events, settings.group_id, settings.session_timeout_ms) == (
        100,
        "g",
        6000,
    )
    assert settings.workers == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LEDGER_PROJECTOR_BATCH", "many", "must be an integer"),
        ("LEDGER_PROJECTOR_BATCH", "0", "at least 1"),
        ("LEDGER_PROJECTOR_HTTP", "9464", "host:port"),
        ("LEDGER_PROJECTOR_HTTP", "localhost:99999", "host:port"),
        ("LEDGER_PROJECTOR_WORKERS", "0", "at least 1"),
        ("LEDGER_PROJECTOR_WORKERS", "auto", "must be an integer"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}.*{message}"):
        Settings.from_env({name: value})


def test_workers_need_a_status_port_each() -> None:
    settings = Settings.from_env(
        {"LEDGER_PROJECTOR_HTTP": "127.0.0.1:65534", "LEDGER_PROJECTOR_WORKERS": "2"}
    )
    assert settings.workers == 2
    with pytest.raises(SettingsError, match="status ports 65534-65536"):
        Settings.from_env(
            {"LEDGER_PROJECTOR_HTTP": "127.0.0.1:65534", "LEDGER_PROJECTOR_WORKERS": "3"}
        )
