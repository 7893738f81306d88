"""Where the public keys that sign tokens come from: a JWKS file, or an identity provider's
JWKS URL (https). Either way a token names its key by `kid`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import jwt

# Asymmetric algorithms only: a shared-secret (HS*) key in a JWKS would let anyone who can read
# the key set mint tokens, and "none" is no signature at all.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class KeysUnavailable(Exception):
    """The key set could not be fetched: the server's problem, not the caller's."""


class SigningKeys(Protocol):
    # True when looking a key up may wait on the network (it is then done off the event loop).
    blocking: bool

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key `kid` names (the only key if the set has one and the token names none)."""


def _pick(keys: dict[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


def _usable(key_set: jwt.PyJWKSet) -> dict[str, jwt.PyJWK]:
    return {
        str(key.key_id): key
        for key in key_set.keys
        if key.key_id is not None and key.algorithm_name in ALGORITHMS
    }


class JwksFile:
    """A JWKS document on disk, read once at start-up (a new key needs a restart)."""

    blocking = False

    def __init__(self, path: Path) -> None:
        try:
            key_set = jwt.PyJWKSet.from_json(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read the JWKS file {path}: {exc.strerror}") from None
        except (jwt.PyJWKSetError, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path} is not a usable JWKS document: {exc}") from None
        self._keys = _usable(key_set)
        if not self._keys:
            raise ValueError(f"{path} holds no asymmetric signing key with a 'kid'")

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        return _pick(self._keys, kid)


class JwksUrl:
    """An identity provider's JWKS endpoint. The key set is kept for `lifespan` seconds; a token
    naming an unknown key fetches it again, at most once per `refetch_interval`, so that tokens
    with made-up key ids cannot make us hammer the provider."""

    blocking = True

    def __init__(
        self, url: str, *, lifespan: float = 300.0, refetch_interval: float = 30.0
    ) -> None:
        if urlsplit(url).scheme != "https":
            raise ValueError("LEDGER_JWKS must be a file path or an https:// URL")
        self._client = jwt.PyJWKClient(url, cache_keys=False, lifespan=int(lifespan), timeout=5)
        self._shown = redact_url(url)
        self._refetch_interval = refetch_interval
        self._last_refetch = float("-inf")

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        found = _pick(self._fetch(refresh=False), kid)
        now = time.monotonic()
        if found is None and now - self._last_refetch >= self._refetch_interval:
            self._last_refetch = now
            found = _pick(self._fetch(refresh=True), kid)
        return found

    def _fetch(self, *, refresh: bool) -> dict[str, jwt.PyJWK]:
        try:
            return _usable(self._client.get_jwk_set(refresh=refresh))
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise KeysUnavailable(
                f"cannot fetch the token signing keys from {self._shown}: {type(exc).__name__}"
            ) from None


def redact_url(url: str) -> str:
    """`url` without any user:password and without its query (which may carry a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def signing_keys(source: str) -> SigningKeys:
    """LEDGER_JWKS: an https URL, or the path of a JWKS file."""
    if "://" in source:
        return JwksUrl(source)
    return JwksFile(Path(source))
