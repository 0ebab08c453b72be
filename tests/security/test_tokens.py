"""Token verification and its cache: a cached token is never more trusted than a fresh one."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkyra.security import tokens
from arkyra.security.tokens import InvalidToken, mint_token, verify_token
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    tokens.verified_tokens.clear()


def test_a_cached_token_is_refused_after_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    token = mint_token(settings, organization_id="acme", role="admin", ttl_seconds=60)
    assert verify_token(settings, token).organization_id == "acme"
    assert len(tokens.verified_tokens) == 1
    # An hour later the cache must not answer: the full check runs (and would refuse it).
    real_time = tokens.time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real_time() + 3600)

    def full_check(*args: object) -> None:
        raise InvalidToken("the token has expired; mint a new one")

    monkeypatch.setattr(tokens, "_verify", full_check)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(settings, token)
    assert len(tokens.verified_tokens) == 0


def test_a_cached_token_is_refused_under_another_secret_or_audience(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    token = mint_token(settings, organization_id="acme", role="member")
    verify_token(settings, token)
    rotated = make_settings(tmp_path, jwt_secret="another-secret-another-secret-0000")
    with pytest.raises(InvalidToken):
        verify_token(rotated, token)
    with_audience = make_settings(tmp_path, jwt_audience="arkyra-api")
    with pytest.raises(InvalidToken):
        verify_token(with_audience, token)


def test_refused_tokens_are_not_cached_and_the_cache_is_bounded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(InvalidToken):
        verify_token(settings, "not-a-token")
    assert len(tokens.verified_tokens) == 0
    small = tokens.VerifiedTokens(max_size=3)
    principal = tokens.Principal("s", "o", "member")
    for n in range(5):
        small.put((str(n), "k", "HS256", None, None), principal, expires_at=1e12)
    assert len(small) == 3
    assert small.get(("0", "k", "HS256", None, None), now=0) is None
    assert small.get(("4", "k", "HS256", None, None), now=0) == principal
