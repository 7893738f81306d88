"""The settings for Kafka's, the registry's and PostgreSQL's credentials, and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.database_access import database_access
from ledger.environment import SettingsError
from ledger.kafka_security import kafka_client_config, kafka_security
from ledger.redaction import redact_url, scrub
from ledger.registry_access import registry_access

SCRAM = {
    "LEDGER_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "LEDGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "LEDGER_KAFKA_SASL_USERNAME": "ledger",
    "LEDGER_KAFKA_SASL_PASSWORD": "hunter22",
}


def test_no_kafka_variables_mean_plaintext_without_extra_properties() -> None:
    assert kafka_client_config({}) == {}


def test_sasl_ssl_with_scram_becomes_librdkafka_properties() -> None:
    assert kafka_client_config(SCRAM) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ledger",
        "sasl.password": "hunter22",
    }


def test_the_repr_of_kafka_security_hides_the_password() -> None:
    assert "hunter22" not in repr(kafka_security(SCRAM))


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    env = {
        **SCRAM,
        "LEDGER_KAFKA_SASL_PASSWORD": "",
        "LEDGER_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    assert kafka_client_config(env)["sasl.password"] == "from-a-file"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEDGER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT"),
        ({"LEDGER_KAFKA_SASL_USERNAME": "ledger"}, "security protocol is PLAINTEXT"),
        ({"LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "LEDGER_KAFKA_SASL_MECHANISM is required"),
        ({**SCRAM, "LEDGER_KAFKA_SASL_MECHANISM": "MD5"}, "must be one of PLAIN"),
        ({**SCRAM, "LEDGER_KAFKA_SASL_PASSWORD": ""}, "needs LEDGER_KAFKA_SASL_PASSWORD"),
        (
            {"LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL", "LEDGER_KAFKA_SSL_CA_LOCATION": "/no/such"},
            "cannot read /no/such",
        ),
        (
            {"LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL", "LEDGER_KAFKA_SSL_KEY_LOCATION": "/k"},
            "a client certificate needs both",
        ),
        ({"LEDGER_KAFKA_SSL_CA_LOCATION": "/ca.pem"}, "security protocol is PLAINTEXT"),
    ],
)
def test_unknown_or_contradictory_kafka_settings_refuse_to_start(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        kafka_security(env)
    assert "hunter22" not in str(error.value)


def test_a_config_file_adds_properties_but_not_twice_nor_reserved_ones(tmp_path: Path) -> None:
    file = tmp_path / "client.properties"
    file.write_text(
        "# OAUTHBEARER\nsasl.oauthbearer.method=oidc\nsecurity.protocol=SASL_SSL\n"
        "sasl.mechanism=OAUTHBEARER\n"
    )
    config = kafka_client_config({"LEDGER_KAFKA_CONFIG_FILE": str(file)})
    assert config["sasl.oauthbearer.method"] == "oidc"
    with pytest.raises(SettingsError, match="set it in one place only"):
        kafka_security(
            {"LEDGER_KAFKA_CONFIG_FILE": str(file), "LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL"}
        )
    file.write_text("bootstrap.servers=elsewhere:9092\n")
    with pytest.raises(SettingsError, match="LEDGER_KAFKA_BOOTSTRAP_SERVERS"):
        kafka_security({"LEDGER_KAFKA_CONFIG_FILE": str(file)})


def test_registry_credentials_in_the_url_are_taken_out_of_it() -> None:
    access = registry_access({"LEDGER_SCHEMA_REGISTRY_URL": "https://bob:s%40cret@reg:8081/apis"})
    assert access.url == "https://reg:8081/apis"
    assert access.client_config()["basic.auth.user.info"] == "bob:s@cret"
    assert "s@cret" not in repr(access)
    assert access.scrub("401 for bob:s@cret") == "401 for ***"


def test_registry_user_info_and_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    access = registry_access(
        {
            "LEDGER_SCHEMA_REGISTRY_URL": "https://reg",
            "LEDGER_SCHEMA_REGISTRY_CA": str(ca),
            "LEDGER_SCHEMA_REGISTRY_USER_INFO": "bob:pw",
        }
    )
    assert access.client_config() == {
        "url": "https://reg",
        "ssl.ca.location": str(ca),
        "basic.auth.credentials.source": "USER_INFO",
        "basic.auth.user.info": "bob:pw",
    }
    with pytest.raises(SettingsError, match="use one"):
        registry_access(
            {
                "LEDGER_SCHEMA_REGISTRY_URL": "https://a:b@reg",
                "LEDGER_SCHEMA_REGISTRY_USER_INFO": "c:d",
            }
        )
    with pytest.raises(SettingsError, match="not https"):
        registry_access({"LEDGER_SCHEMA_REGISTRY_CA": str(ca)})


def test_the_database_password_stays_out_of_the_url_and_the_repr(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p4ss\n")
    access = database_access(
        {
            "LEDGER_DATABASE_URL": "postgresql://ledger_reader@db/ledger?sslmode=verify-full",
            "LEDGER_DATABASE_PASSWORD_FILE": str(secret),
        }
    )
    assert access.connect_args() == {
        "dsn": "postgresql://ledger_reader@db/ledger?sslmode=verify-full",
        "password": "p4ss",
    }
    assert "p4ss" not in repr(access)
    assert access.scrub("refused p4ss") == "refused ***"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LEDGER_DATABASE_URL": "postgresql://u:x@db/l", "LEDGER_DATABASE_PASSWORD": "y"},
            "use one",
        ),
        ({"LEDGER_DATABASE_URL": "postgresql://db/l?sslmode=strict"}, "sslmode"),
        ({"LEDGER_DATABASE_URL": "postgresql://db/l?sslrootcert=/no/ca.pem"}, "cannot read"),
        ({"LEDGER_DATABASE_URL": "mysql://u:x@db/l"}, "must start with postgresql://"),
    ],
)
def test_bad_database_settings_refuse_to_start_without_showing_a_password(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        database_access(env)
    assert ":x@" not in str(error.value)


def test_redact_url_hides_passwords_and_keeps_the_rest() -> None:
    assert redact_url("postgresql://u:pw@h:5432/d?sslmode=require&password=pw") == (
        "postgresql://u:***@h:5432/d?sslmode=require&password=***"
    )
    assert redact_url("http://127.0.0.1:8081/apis") == "http://127.0.0.1:8081/apis"
    assert scrub("at https://bob:pw@reg/x and again pw-long", ["pw-long"]) == (
        "at https://bob:***@reg/x and again ***"
    )
