"""Bearer-token verification (ledger.auth.verification) with keys made by the test."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.auth.keys import JwksFile
from ledger.auth.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalCredentials
from ledger.auth.local import ensure_local_credentials as made
from ledger.auth.policy import READ, WRITE
from ledger.auth.verification import TokenVerifier, Unauthenticated


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> LocalCredentials:
    return made(tmp_path_factory.mktemp("credentials"))


@pytest.fixture(scope="module")
def strangers(tmp_path_factory: pytest.TempPathFactory) -> LocalCredentials:
    """Another local stack's credentials: a key this verifier does not know."""
    return made(tmp_path_factory.mktemp("strangers"))


def _verifier(credentials: LocalCredentials, **kwargs: object) -> TokenVerifier:
    return TokenVerifier(JwksFile(credentials.jwks), LOCAL_ISSUER, LOCAL_AUDIENCE, **kwargs)  # type: ignore[arg-type]


def _refusal(verifier: TokenVerifier, authorization: str | None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(verifier.principal(authorization))
    message = refused.value.message
    if authorization:
        assert authorization.split()[-1] not in message, "the token is echoed"
    return message


def test_a_valid_token_gives_its_subject_scopes_and_accounts(credentials: LocalCredentials) -> None:
    token = credentials.mint([WRITE, READ], accounts=["acme-*"], subject="alice")
    principal = asyncio.run(_verifier(credentials).principal(f"Bearer {token}"))
    assert principal.subject == "alice"
    assert principal.scopes == {WRITE, READ}
    assert principal.accounts == ("acme-*",)
    assert principal.may_act_on("acme-1")
    assert not principal.may_act_on("globex-1")


def test_a_ready_token_may_act_on_every_account(credentials: LocalCredentials) -> None:
    principal = asyncio.run(
        _verifier(credentials).principal(f"Bearer {credentials.token('reader')}")
    )
    assert principal.scopes == {READ}
    assert principal.accounts is None


def test_a_missing_or_malformed_authorization_says_what_to_send(
    credentials: LocalCredentials,
) -> None:
    verifier = _verifier(credentials)
    assert "no bearer token" in _refusal(verifier, None)
    assert "no bearer token" in _refusal(verifier, "")
    assert "must read 'Bearer <token>'" in _refusal(verifier, "Basic dXNlcjpwYXNz")
    assert "not a well-formed JWT" in _refusal(verifier, "Bearer not-a-jwt")


def test_an_expired_token_is_refused_as_expired(credentials: LocalCredentials) -> None:
    token = credentials.mint([READ], ttl_seconds=-120)
    assert "expired" in _refusal(_verifier(credentials), f"Bearer {token}")


def test_a_token_signed_by_an_unknown_key_is_refused(
    credentials: LocalCredentials, strangers: LocalCredentials
) -> None:
    message = _refusal(_verifier(credentials), f"Bearer {strangers.token('admin')}")
    assert "does not trust" in message


def test_a_token_forged_under_a_known_key_id_is_refused(credentials: LocalCredentials) -> None:
    genuine = credentials.mint([READ])
    kid = jwt.get_unverified_header(genuine)["kid"]
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "scope": "ledger:admin"},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": kid},
    )
    assert "signature does not verify" in _refusal(_verifier(credentials), f"Bearer {forged}")


def test_an_unsigned_token_is_refused(credentials: LocalCredentials) -> None:
    claims = jwt.decode(credentials.mint([READ]), options={"verify_signature": False})
    kid = jwt.get_unverified_header(credentials.mint([READ]))["kid"]
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": kid})
    assert "algorithm" in _refusal(_verifier(credentials), f"Bearer {unsigned}")


def test_a_token_for_another_audience_or_issuer_is_refused_naming_ours(
    credentials: LocalCredentials,
) -> None:
    other_audience = credentials.mint([READ], audience="payments")
    assert f"accepts {LOCAL_AUDIENCE!r}" in _refusal(
        _verifier(credentials), f"Bearer {other_audience}"
    )
    strict = TokenVerifier(JwksFile(credentials.jwks), "https://idp.example", LOCAL_AUDIENCE)
    assert "another issuer" in _refusal(strict, f"Bearer {credentials.mint([READ])}")


def test_a_token_without_expiry_is_refused(credentials: LocalCredentials) -> None:
    claims = jwt.decode(credentials.mint([READ]), options={"verify_signature": False})
    del claims["exp"]
    kid = jwt.get_unverified_header(credentials.mint([READ]))["kid"]
    key = (credentials.directory / "signing.key").read_bytes()
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})
    assert "'exp'" in _refusal(_verifier(credentials), f"Bearer {token}")


def test_a_verified_token_is_remembered_until_it_expires(credentials: LocalCredentials) -> None:
    now = [time.time()]
    verifier = _verifier(credentials, clock=lambda: now[0])
    token = credentials.mint([READ], ttl_seconds=60)
    first = asyncio.run(verifier.principal(f"Bearer {token}"))
    assert asyncio.run(verifier.principal(f"Bearer {token}")) is first  # from the cache
    now[0] += 61  # past its exp by the verifier's clock: verified again, not taken from the cache
    assert asyncio.run(verifier.principal(f"Bearer {token}")) is not first


def test_the_cache_is_bounded(credentials: LocalCredentials) -> None:
    verifier = _verifier(credentials, cache_size=3)
    for n in range(5):
        asyncio.run(verifier.principal(f"Bearer {credentials.mint([READ], subject=str(n))}"))
    assert len(verifier._verified) == 3


def test_a_jwks_file_without_usable_keys_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "jwks.json"
    empty.write_text('{"keys": []}')
    with pytest.raises(ValueError, match=r"jwks\.json"):
        JwksFile(empty)
    with pytest.raises(ValueError, match="cannot read"):
        JwksFile(tmp_path / "missing.json")
