"""Per-organization, per-route limits with RateLimit headers; 429 with Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage

from arkyra.config import Settings
from arkyra.errors import ConfigError
from arkyra.ratelimit import RateLimiter, storage_for
from tests.api.conftest import API_URL


async def exercise(app: FastAPI, auth) -> None:
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            first = await api.get("/third-party", headers=auth("org-a"))
            assert first.status_code == 200
            assert first.headers["ratelimit-limit"] == "3"
            assert first.headers["ratelimit-remaining"] == "2"
            await api.get("/third-party", headers=auth("org-a"))
            third = await api.get("/third-party", headers=auth("org-a"))
            assert third.headers["ratelimit-remaining"] == "0"
            refused = await api.get("/third-party", headers=auth("org-a"))
            assert refused.status_code == 429
            assert refused.json()["error"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-remaining"] == "0"
            # Another route of the same organization has its own window ...
            assert (await api.get("/third-party/list", headers=auth("org-a"))).status_code == 200
            # ... and so does another organization on the same route.
            assert (await api.get("/third-party", headers=auth("org-b"))).status_code == 200
            # Health and metrics are never limited.
            for _ in range(5):
                assert (await api.get("/healthz")).status_code == 200


async def test_limit_in_memory(make_app: Callable[..., FastAPI], auth) -> None:
    app = make_app(limiter=RateLimiter(MemoryStorage()), limits={"default": "3/minute"})
    await exercise(app, auth)


async def test_limit_in_redis(make_app: Callable[..., FastAPI], auth, redis_url: str) -> None:
    limiter = RateLimiter(storage_for(redis_url), namespace=f"arkyra-test-{uuid.uuid4().hex}")
    app = make_app(limiter=limiter, limits={"default": "3/minute"})
    await exercise(app, auth)


async def test_connect_has_its_own_tighter_limit(make_app: Callable[..., FastAPI], auth) -> None:
    app = make_app(limits={"connect": "1/minute", "default": "100/minute"})
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            body = {"fields": {}}
            assert (
                await api.post("/third-party/heygen", json=body, headers=auth())
            ).status_code == 422
            refused = await api.post("/third-party/heygen", json=body, headers=auth())
            assert refused.status_code == 429
            assert "retry-after" in refused.headers


async def test_unauthenticated_requests_are_401_not_counted(
    make_app: Callable[..., FastAPI], auth
) -> None:
    app = make_app(limits={"default": "1/minute"})
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            for _ in range(3):
                assert (await api.get("/third-party")).status_code == 401
            assert (await api.get("/third-party", headers=auth())).status_code == 200


def test_a_bad_limit_stops_start_up(make_app: Callable[..., FastAPI]) -> None:
    with pytest.raises(ConfigError, match="connect"):
        make_app(limits={"connect": "lots"})


def test_an_unknown_bucket_stops_start_up_with_the_buckets_named(
    make_app: Callable[..., FastAPI],
) -> None:
    with pytest.raises(ConfigError, match=r"'defualt' is not a bucket.*ai, connect, default"):
        make_app(limits={"defualt": "10/minute"})


async def test_the_ai_routes_have_their_own_limit_from_the_settings(
    make_app: Callable[..., FastAPI], db_settings: Settings, auth
) -> None:
    settings = db_settings.model_copy(update={"rate_limits": {"ai": "2/minute"}})
    app = make_app(settings, limiter=RateLimiter(MemoryStorage()))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            for remaining in ("1", "0"):
                allowed = await api.get("/ai/providers", headers=auth())
                assert allowed.status_code == 200, allowed.text
                assert allowed.headers["ratelimit-limit"] == "2"
                assert allowed.headers["ratelimit-remaining"] == remaining
            refused = await api.get("/ai/providers", headers=auth())
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            chat = {"model": "gpt-6-luna", "messages": [{"role": "user", "content": "hi"}]}
            for remaining in ("1", "0"):  # the chat door counts in its own window
                answer = await api.post("/v1/chat/completions", json=chat, headers=auth())
                # its own response body (no provider answers here) still carries the limit
                assert answer.headers["ratelimit-limit"] == "2", answer.text
                assert answer.headers["ratelimit-remaining"] == remaining
            assert (
                await api.post("/v1/chat/completions", json=chat, headers=auth())
            ).status_code == 429
            # the other buckets keep their defaults
            assert (await api.get("/third-party", headers=auth())).status_code == 200
