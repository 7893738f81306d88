"""How every Kafka client of the three services connects securely: one set of librdkafka
properties, read once from the environment, merged into each producer, consumer and admin client.

The variables cover what most clusters need (TLS, mutual TLS, SASL PLAIN/SCRAM);
`LEDGER_KAFKA_CONFIG_FILE` names a librdkafka properties file for anything else (OAUTHBEARER,
GSSAPI, CRLs, ...). Contradictions (a SASL user on a PLAINTEXT connection, a certificate without
its key, a property set both ways) refuse to start with a message naming the variables, instead
of surfacing later as a connection that never authenticates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.environment import SettingsError
from ledger.redaction import REDACTED

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
# Mechanisms whose credentials are a user name and a password.
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# librdkafka properties whose values are secrets: never shown in a repr or a message.
SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
    }
)
# Set by the services themselves, per client: a file setting them would change what the
# ledger relies on (transactions, read_committed, where offsets come from).
_RESERVED_PROPERTIES = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "transactional.id",
        "enable.idempotence",
        "isolation.level",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "logger",
    }
)

# Variable -> librdkafka property.
_VARIABLES = {
    "LEDGER_KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "LEDGER_KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "LEDGER_KAFKA_SASL_USERNAME": "sasl.username",
    "LEDGER_KAFKA_SASL_PASSWORD": "sasl.password",
    "LEDGER_KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "LEDGER_KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "LEDGER_KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "LEDGER_KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}
_FILES = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The security properties every Kafka client gets (empty: PLAINTEXT, no authentication).

    Its repr hides secret values, so settings holding it can be logged."""

    properties: tuple[tuple[str, str], ...] = ()

    def config(self) -> dict[str, str]:
        """The properties, to merge first into a client's configuration."""
        return dict(self.properties)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values (for scrubbing texts that might quote them)."""
        return tuple(value for key, value in self.properties if key in SECRET_PROPERTIES)

    @property
    def protocol(self) -> str:
        return self.config().get("security.protocol", "PLAINTEXT")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={REDACTED if key in SECRET_PROPERTIES else value}"
            for key, value in self.properties
        )
        return f"KafkaSecurity({shown})"


def kafka_client_config(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The librdkafka security properties the environment asks for (see `kafka_security`)."""
    return kafka_security(env).config()


def kafka_security(env: Mapping[str, str] | None = None) -> KafkaSecurity:
    """Read and check the LEDGER_KAFKA_* security variables; SettingsError names what is wrong."""
    env = os.environ if env is None else env
    properties: dict[str, str] = {}
    origin: dict[str, str] = {}
    config_file = env.get("LEDGER_KAFKA_CONFIG_FILE") or None
    if config_file:
        for key, value in _read_properties(config_file).items():
            properties[key] = value
            origin[key] = f"{key} in LEDGER_KAFKA_CONFIG_FILE"
    for variable, key in _VARIABLES.items():
        given = env.get(variable)
        if not given:
            continue
        if key in properties:
            raise SettingsError(
                f"{variable} and {origin[key]} both set {key}: set it in one place only"
            )
        properties[key] = given
        origin[key] = variable
    password_file = env.get("LEDGER_KAFKA_SASL_PASSWORD_FILE") or None
    if password_file:
        if "sasl.password" in properties:
            raise SettingsError(
                f"LEDGER_KAFKA_SASL_PASSWORD_FILE and {origin['sasl.password']} both set the "
                "SASL password: set it in one place only"
            )
        properties["sasl.password"] = read_secret_file(
            "LEDGER_KAFKA_SASL_PASSWORD_FILE", password_file
        )
        origin["sasl.password"] = "LEDGER_KAFKA_SASL_PASSWORD_FILE"
    _check(properties, origin)
    return KafkaSecurity(tuple(properties.items()))


def read_secret_file(variable: str, path: str) -> str:
    """The secret in the file `path` (named by `variable`), without its trailing line break."""
    try:
        secret = Path(path).read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{variable}: cannot read {path}: {error.__class__.__name__}") from None
    if not secret:
        raise SettingsError(f"{variable}: {path} is empty")
    return secret


def _read_properties(path: str) -> dict[str, str]:
    """A librdkafka properties file: `key=value` lines, `#` or `!` comments, blank lines."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(
            f"LEDGER_KAFKA_CONFIG_FILE: cannot read {path}: {error.__class__.__name__}"
        ) from None
    properties: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        # The line itself is not quoted: it may hold a secret.
        if not equals or not key:
            raise SettingsError(
                f"LEDGER_KAFKA_CONFIG_FILE: line {number} of {path} is not key=value"
            )
        if key in _RESERVED_PROPERTIES:
            raise SettingsError(
                f"LEDGER_KAFKA_CONFIG_FILE: {key} (line {number} of {path}) is set by the "
                "services themselves"
                + (": use LEDGER_KAFKA_BOOTSTRAP_SERVERS" if key == "bootstrap.servers" else "")
            )
        properties[key] = value.strip()
    return properties


def _check(properties: dict[str, str], origin: Mapping[str, str]) -> None:
    def where(key: str) -> str:
        return origin.get(key, key)

    protocol = properties.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(
            f"{where('security.protocol')} must be one of {', '.join(PROTOCOLS)}, "
            f"got {properties['security.protocol']!r}"
        )
    if "security.protocol" in properties:
        properties["security.protocol"] = protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    sasl_keys = [key for key in properties if key.startswith("sasl.")]
    if sasl_keys and not sasl:
        raise SettingsError(
            f"{where(sasl_keys[0])} is set but the security protocol is {protocol}: set "
            "LEDGER_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) to authenticate with SASL"
        )
    ssl_keys = [key for key in properties if key.startswith("ssl.")]
    if ssl_keys and not tls:
        raise SettingsError(
            f"{where(ssl_keys[0])} is set but the security protocol is {protocol}: set "
            "LEDGER_KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL) to use TLS"
        )
    if sasl:
        _check_sasl(properties, where)
    has_certificate = "ssl.certificate.location" in properties
    has_key = "ssl.key.location" in properties
    if has_certificate != has_key:
        given, missing = (
            ("ssl.certificate.location", "LEDGER_KAFKA_SSL_KEY_LOCATION")
            if has_certificate
            else ("ssl.key.location", "LEDGER_KAFKA_SSL_CERTIFICATE_LOCATION")
        )
        raise SettingsError(
            f"{where(given)} is set without {missing}: a client certificate needs both"
        )
    for key in _FILES:
        path = properties.get(key)
        if path is not None and not os.access(path, os.R_OK):
            raise SettingsError(f"{where(key)}: cannot read {path}")


def _check_sasl(properties: dict[str, str], where: Callable[[str], str]) -> None:
    mechanism = properties.get("sasl.mechanism")
    if mechanism is None:
        raise SettingsError(
            f"LEDGER_KAFKA_SASL_MECHANISM is required with security protocol "
            f"{properties['security.protocol']}: one of {', '.join(MECHANISMS)}"
        )
    mechanism = mechanism.upper()
    if mechanism not in MECHANISMS:
        raise SettingsError(
            f"{where('sasl.mechanism')} must be one of {', '.join(MECHANISMS)}, got {mechanism!r}"
        )
    properties["sasl.mechanism"] = mechanism
    if mechanism in _PASSWORD_MECHANISMS:
        if "sasl.username" not in properties:
            raise SettingsError(f"SASL {mechanism} needs LEDGER_KAFKA_SASL_USERNAME")
        if "sasl.password" not in properties:
            raise SettingsError(
                f"SASL {mechanism} needs LEDGER_KAFKA_SASL_PASSWORD or "
                "LEDGER_KAFKA_SASL_PASSWORD_FILE"
            )
