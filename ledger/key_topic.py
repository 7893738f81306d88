"""The account keys topic: each account's data key, wrapped, in a compacted Kafka topic.

Key: the account id; value: its data key wrapped by the key-encryption key; a tombstone (null
value) forgets it. The command server writes a key in the same transaction as the AccountOpened
whose owner it seals, and the tombstone in the same transaction as the OwnerErased that records
the erasure, so the log never holds an event whose key was not written with it.

Compaction is what really forgets: until the cleaner rewrites the segment holding a key, its
(wrapped) bytes stay on disk. The settings below bound that (docs/design.md, decision 14).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException

from ledger.environment import SettingsError
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.kafka_security import KafkaSecurity
from ledger.personal_data import KeysUnreachable, KeyWrapper, parse_key_encryption_key

log = logging.getLogger(__name__)

KEY_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    # A key's bytes can only be cleaned once their segment is closed: roll one every hour.
    "segment.ms": "3600000",
    # ... and clean it within a day of a tombstone, however little else changed.
    "max.compaction.lag.ms": "86400000",
    "min.cleanable.dirty.ratio": "0.01",
    # The tombstone itself (only an account id) goes a day after it was compacted.
    "delete.retention.ms": "86400000",
    "min.compaction.lag.ms": "0",
}
"""The longest a forgotten key's wrapped bytes survive on a broker's disk: about segment.ms plus
max.compaction.lag.ms (25 hours), plus the cleaner's own backlog."""


def key_topic_name(event_topic: str) -> str:
    return f"{event_topic}.account_keys"


class KafkaKeyStore:
    """The data keys in the key topic, read into memory and kept up to date on demand.

    About 100 bytes per live account. `get` of an unknown account reads what the topic gained
    since (an account opened after the last read, or a key forgotten), at most once per
    `refresh_interval` seconds, so a stream of reads of erased accounts costs one read a second.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        wrapper: KeyWrapper,
        security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
        timeout: float = 10,
        refresh_interval: float = 1.0,
    ) -> None:
        self._consumer = Consumer(
            {**read_to_end_config(bootstrap, "ledger-account-keys", security=security)}
        )
        self._topic = topic
        self._wrapper = wrapper
        self._timeout = timeout
        self._refresh_interval = refresh_interval
        self._wrapped: dict[str, bytes] = {}
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._last_refresh = -float("inf")

    def refresh(self) -> None:
        """Read the topic from where the last read ended to its current end."""
        with self._lock:
            ends = high_watermarks(self._consumer, self._topic, [0], timeout=self._timeout)
            reader = ReadToEnd(self._consumer, self._topic, self._positions, ends)
            for records in reader.batches(time.monotonic() + self._timeout, most=10_000):
                for msg in records:
                    account_id = (msg.key() or b"").decode("utf-8", "replace")
                    value = msg.value()
                    if value is None:
                        self._wrapped.pop(account_id, None)
                    else:
                        self._wrapped[account_id] = value
                    self._positions[0] = (msg.offset() or 0) + 1
            self._positions[0] = max(self._positions.get(0, 0), ends[0])
            self._last_refresh = time.monotonic()

    def holds(self, account_id: str) -> bool:
        return account_id in self._wrapped

    def get(self, account_id: str) -> bytes | None:
        wrapped = self._wrapped.get(account_id)
        if wrapped is None and time.monotonic() - self._last_refresh >= self._refresh_interval:
            try:
                self.refresh()
            except KafkaException as error:
                raise KeysUnreachable(
                    f"the key topic {self._topic!r} cannot be read now: {error.args[0].str()}"
                ) from None
            wrapped = self._wrapped.get(account_id)
        return None if wrapped is None else self._wrapper.unwrap(account_id, wrapped)

    def close(self) -> None:
        self._consumer.close()


def key_wrapper_from_file(path: str | None) -> KeyWrapper:
    """The key wrapper for the key-encryption key in `path` (LEDGER_KEY_ENCRYPTION_KEY_FILE)."""
    if not path:
        raise SettingsError(
            "LEDGER_KEY_ENCRYPTION_KEY_FILE is required: a file holding 64 hex digits (32 "
            "random bytes, e.g. `openssl rand -hex 32`) that wraps every account's data key"
        )
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise SettingsError(
            f"LEDGER_KEY_ENCRYPTION_KEY_FILE {path!r} cannot be read: {error.strerror}"
        ) from error
    try:
        return KeyWrapper(parse_key_encryption_key(text))
    except ValueError as error:
        raise SettingsError(f"LEDGER_KEY_ENCRYPTION_KEY_FILE {path!r}: {error}") from error
