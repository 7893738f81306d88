"""Personal data sealed per data subject, so that forgetting a key erases it (crypto-shredding).

Each account has its own 256-bit data key; its owner is sealed with AES-256-GCM, the account id
as associated data (a sealed owner copied onto another account does not open). Data keys are
stored wrapped (AES key wrap, RFC 3394) by a key-encryption key that never leaves the processes'
files, so the key topic alone reveals nothing. Erasing an owner forgets the data key: every copy
of the sealed owner (the event log, the read model, backups) becomes noise. docs/design.md,
decision 14.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ENCRYPTION_KEY_BYTES = 32
ERASED_OWNER = ""
"""What every read shows as the owner of an erased account (with `owner_erased` set)."""


class UnreadableSecret(ValueError):
    """A sealed owner or wrapped key that does not open with the key given: corrupt, or sealed
    for another account or under another key-encryption key. The message never holds secrets."""


class KeysUnreachable(Exception):
    """The key store cannot be asked now (its Kafka or KMS is down); asking later may succeed."""


class KeyStore(Protocol):
    """Where data keys live; a compacted Kafka topic here (key_topic.py), a cloud KMS elsewhere."""

    def get(self, account_id: str) -> bytes | None:
        """The account's data key, or None if it has none (never had one, or was forgotten);
        raises KeysUnreachable when the store cannot tell now."""
        ...

    def holds(self, account_id: str) -> bool:
        """Whether `get` would answer from memory, without waiting on the store."""
        ...


def new_data_key() -> bytes:
    return secrets.token_bytes(DATA_KEY_BYTES)


def seal(data_key: bytes, account_id: str, plaintext: str) -> bytes:
    """`plaintext` sealed for `account_id`: a fresh nonce, then ciphertext and tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode(), account_id.encode())


def open_sealed(data_key: bytes, account_id: str, sealed: bytes) -> str:
    """What `seal` sealed; raises UnreadableSecret if it does not open with this key and id."""
    try:
        plain = AESGCM(data_key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], account_id.encode()
        )
        return plain.decode()
    except (InvalidTag, ValueError) as error:
        raise UnreadableSecret(
            f"the sealed owner of account {account_id!r} does not open"
        ) from error


class KeyWrapper:
    """Wraps and unwraps data keys with the key-encryption key."""

    def __init__(self, key_encryption_key: bytes) -> None:
        if len(key_encryption_key) != KEY_ENCRYPTION_KEY_BYTES:
            raise ValueError(
                f"the key-encryption key must be {KEY_ENCRYPTION_KEY_BYTES} bytes, "
                f"got {len(key_encryption_key)}"
            )
        self._kek = key_encryption_key

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._kek, data_key)

    def unwrap(self, account_id: str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._kek, wrapped)
        except (InvalidUnwrap, ValueError) as error:
            raise UnreadableSecret(
                f"the data key of account {account_id!r} does not unwrap with this "
                "key-encryption key (LEDGER_KEY_ENCRYPTION_KEY_FILE)"
            ) from error


def parse_key_encryption_key(text: str) -> bytes:
    """The key-encryption key in its file: 64 hex digits (surrounding whitespace ignored)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_ENCRYPTION_KEY_BYTES:
        raise ValueError(
            f"the key-encryption key file must hold {KEY_ENCRYPTION_KEY_BYTES * 2} hex digits"
        )
    return key


def new_key_encryption_key_text() -> str:
    return secrets.token_hex(KEY_ENCRYPTION_KEY_BYTES) + "\n"


def readable_owner(
    keys: KeyStore, account_id: str, owner: str, owner_sealed: bytes | None, erased: bool
) -> tuple[str, bool]:
    """The owner to show and whether it was erased, from what the read model holds.

    A plaintext owner is one recorded before owners were sealed. A sealed owner whose key is
    gone was erased (the key is forgotten in the same transaction that records OwnerErased, so
    a reader may see the key gone before the read model shows the event).
    """
    if erased:
        return ERASED_OWNER, True
    if not owner_sealed:
        return owner, False
    data_key = keys.get(account_id)
    if data_key is None:
        return ERASED_OWNER, True
    return open_sealed(data_key, account_id, owner_sealed), False
