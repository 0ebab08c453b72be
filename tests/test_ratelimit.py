"""Rate limits in memory and, when configured, in Redis (shared between limiters)."""

from __future__ import annotations

import uuid

import pytest

from arkyra.errors import ConfigError
from arkyra.ratelimit import RateLimiter, storage_for


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    return request.getfixturevalue("redis_url")


async def test_limit_refuses_after_n_and_says_when(backend: str | None) -> None:
    limiter = RateLimiter(storage_for(backend))
    org = f"org-{uuid.uuid4().hex}"
    decisions = [await limiter.hit("3/minute", org, "GET /x") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[-1]
    assert 0 < refused.reset_after <= 60
    assert refused.headers()["Retry-After"] == str(max(1, round(refused.reset_after)))
    # another key has its own window
    assert (await limiter.hit("3/minute", org, "GET /y")).allowed


async def test_redis_window_is_shared_between_processes(redis_url: str) -> None:
    key = f"org-{uuid.uuid4().hex}"
    first, second = RateLimiter(storage_for(redis_url)), RateLimiter(storage_for(redis_url))
    assert (await first.hit("2/minute", key)).allowed
    assert (await second.hit("2/minute", key)).allowed
    assert not (await first.hit("2/minute", key)).allowed


def test_bad_configuration_is_explained() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        storage_for("http://127.0.0.1:6379")


async def test_bad_limit_string_is_explained() -> None:
    with pytest.raises(ConfigError, match="60/minute"):
        await RateLimiter(storage_for(None)).hit("lots", "k")
