"""The function cache in memory and in Redis: hit, miss, expiry, invalidation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from arkyra.api.cache import MemoryFunctionCache, RedisFunctionCache, cache_from_settings
from arkyra.config import Settings


async def behaves_like_a_cache(cache) -> None:
    assert await cache.get("i1", "voices", {}) is None
    await cache.set("i1", "voices", {}, [{"id": "v1"}])
    await cache.set("i1", "voices", {"language": "English"}, [{"id": "v2"}])
    await cache.set("i2", "voices", {}, [{"id": "other"}])
    assert await cache.get("i1", "voices", {}) == [{"id": "v1"}]
    assert await cache.get("i1", "voices", None) == [{"id": "v1"}]
    assert await cache.get("i1", "voices", {"language": "English"}) == [{"id": "v2"}]
    assert await cache.get("i1", "avatars", {}) is None
    await cache.invalidate("i1")
    assert await cache.get("i1", "voices", {}) is None
    assert await cache.get("i1", "voices", {"language": "English"}) is None
    assert await cache.get("i2", "voices", {}) == [{"id": "other"}]
    await cache.set("i1", "voices", {}, [])
    assert await cache.get("i1", "voices", {}) == []  # an empty list is a hit, not a miss


async def test_memory_cache() -> None:
    await behaves_like_a_cache(MemoryFunctionCache())


async def test_memory_cache_expires() -> None:
    cache = MemoryFunctionCache(ttl_seconds=0.05)
    await cache.set("i", "voices", {}, [1])
    await asyncio.sleep(0.08)
    assert await cache.get("i", "voices", {}) is None


async def test_redis_cache(redis_url: str) -> None:
    cache = RedisFunctionCache(redis_url, prefix=f"arkyra-test-{uuid.uuid4().hex}")
    try:
        await cache.ping()
        await behaves_like_a_cache(cache)
    finally:
        await cache.close()


async def test_redis_cache_is_shared_between_processes(redis_url: str) -> None:
    prefix = f"arkyra-test-{uuid.uuid4().hex}"
    one, two = (
        RedisFunctionCache(redis_url, prefix=prefix),
        RedisFunctionCache(redis_url, prefix=prefix),
    )
    try:
        await one.set("i", "voices", {}, ["x"])
        assert await two.get("i", "voices", {}) == ["x"]
        await two.invalidate("i")
        assert await one.get("i", "voices", {}) is None
    finally:
        await one.close()
        await two.close()


def test_backend_follows_settings(settings: Settings) -> None:
    assert isinstance(cache_from_settings(settings), MemoryFunctionCache)
    redis_settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    assert isinstance(cache_from_settings(redis_settings), RedisFunctionCache)


@pytest.mark.parametrize("ttl", [1, 3600])
def test_ttl_is_kept(ttl: int) -> None:
    assert MemoryFunctionCache(ttl_seconds=ttl).ttl_seconds == ttl


async def test_redis_cache_through_the_api(make_app, auth, redis_url: str, sandbox_state) -> None:
    """Hit, miss and invalidation on reconnect and delete, with the cache in Redis."""
    import httpx
    from asgi_lifespan import LifespanManager

    from tests.api.conftest import API_URL, connect_heygen

    cache = RedisFunctionCache(redis_url, prefix=f"arkyra-test-{uuid.uuid4().hex}")
    app = make_app(cache=cache)
    try:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
                integration_id = await connect_heygen(api, auth())
                url = f"/third-party/function/{integration_id}/voices"

                async def outcome() -> str:
                    response = await api.post(url, json={}, headers=auth())
                    assert response.status_code == 200, response.text
                    return response.headers["x-arkyra-cache"]

                assert [await outcome(), await outcome()] == ["miss", "hit"]
                await connect_heygen(api, auth())  # reconnect
                assert [await outcome(), await outcome()] == ["miss", "hit"]
                assert (
                    await api.delete(f"/third-party/{integration_id}", headers=auth())
                ).status_code == 204
                assert await cache.get(integration_id, "voices", {}) is None
        assert sandbox_state.calls["heygen GET /heygen/v2/voices"] == 2
    finally:
        await cache.close()
