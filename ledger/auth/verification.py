"""Bearer tokens: `authorization: Bearer <jwt>` verified with PyJWT (signature, `exp`, `iss`,
`aud`, all required) against keys from `ledger.auth.keys`.

A token that verified is remembered until its `exp` (a bounded number of them), under the
`authorization` value that carried it, so that the calls after the first cost one dictionary
lookup of the value as gRPC hands it over: no parsing, no copy. Messages say what is wrong with
a token, never what the token is.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import jwt

from ledger.auth.keys import ALGORITHMS, KeysUnavailable, SigningKeys
from ledger.auth.principal import ACCOUNTS_CLAIM, SCOPE_CLAIM, Principal, accounts_regex

_BEARER = "bearer "
_CACHE_SIZE = 4096
_LEEWAY_SECONDS = 30
_REQUIRED = ["exp", "iss", "aud"]


class Unauthenticated(Exception):
    """The call carries no usable token; the message says which problem, for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenVerifier:
    def __init__(
        self,
        keys: SigningKeys,
        issuer: str,
        audience: str,
        *,
        cache_size: int = _CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._cache_size = cache_size
        self._clock = clock
        # authorization value -> (principal, exp); insertion order is age, so the first entry
        # is the oldest.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def known(self, authorization: str | None) -> Principal | None:
        """The principal of an `authorization` value verified before and not expired since;
        None: `principal` has to decide (without waiting for anything, for the hot path)."""
        if authorization is None:
            return None
        known = self._verified.get(authorization)
        if known is not None and known[1] > self._clock():
            return known[0]
        return None

    async def principal(self, authorization: str | None) -> Principal:
        """The caller the `authorization` metadata value proves; raises Unauthenticated or
        KeysUnavailable (the key set could not be fetched)."""
        known = self.known(authorization)
        if known is not None:
            return known
        token = _bearer_token(authorization)
        if self._keys.blocking:
            principal, expires = await asyncio.to_thread(self._verify, token)
        else:
            principal, expires = self._verify(token)
        assert authorization is not None  # _bearer_token refused a missing one
        self._remember(authorization, principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """Verify `token` (a JWT): the principal it proves, and when it expires."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        kid = header.get("kid")
        key = self._keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise Unauthenticated(
                "the bearer token is signed by a key this server does not trust (unknown 'kid')"
            )
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS or algorithm != key.algorithm_name:
            raise Unauthenticated(
                "the bearer token's algorithm does not match its key's "
                f"(this key signs with {key.algorithm_name})"
            )
        claims = self._decode(token, key)
        return _principal(claims), float(claims["exp"])

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired: get a new one") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "the bearer token's signature does not verify (forged, or signed by another key)"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"the bearer token is for another audience; this server accepts {self._audience!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"the bearer token is from another issuer; this server trusts {self._issuer!r}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the bearer token lacks the {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated(
                "the bearer token is not valid yet (its 'nbf' or 'iat')"
            ) from None
        except jwt.DecodeError:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the bearer token is invalid ({type(exc).__name__})") from None

    def _remember(self, authorization: str, principal: Principal, expires: float) -> None:
        if len(self._verified) >= self._cache_size:
            now = self._clock()
            for stale in [t for t, (_, exp) in self._verified.items() if exp <= now]:
                del self._verified[stale]
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]
        self._verified[authorization] = (principal, expires)


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("no bearer token: send the metadata 'authorization: Bearer <token>'")
    if not authorization[: len(_BEARER)].lower() == _BEARER:
        raise Unauthenticated("the authorization metadata must read 'Bearer <token>'")
    token = authorization[len(_BEARER) :].strip()
    if not token:
        raise Unauthenticated("the authorization metadata carries an empty bearer token")
    return token


def _principal(claims: dict[str, Any]) -> Principal:
    scope = claims.get(SCOPE_CLAIM, "")
    if isinstance(scope, str):
        scopes = frozenset(scope.split())
    elif isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scopes = frozenset(scope)
    else:
        raise Unauthenticated(f"the bearer token's {SCOPE_CLAIM!r} claim is not a string")
    accounts = claims.get(ACCOUNTS_CLAIM)
    if accounts is not None:
        if isinstance(accounts, str):
            accounts = [accounts]
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise Unauthenticated(
                f"the bearer token's {ACCOUNTS_CLAIM!r} claim is not a list of patterns"
            )
        try:
            re.compile(accounts_regex(tuple(accounts)))
        except re.error:
            raise Unauthenticated(
                f"the bearer token's {ACCOUNTS_CLAIM!r} claim holds a malformed pattern"
            ) from None
    subject = claims.get("sub")
    return Principal(
        subject=subject if isinstance(subject, str) else "",
        scopes=scopes,
        accounts=None if accounts is None else tuple(accounts),
    )


__all__ = ["KeysUnavailable", "TokenVerifier", "Unauthenticated"]
