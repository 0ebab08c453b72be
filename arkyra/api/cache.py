"""Cache of exposed *list* functions (avatars, voices, bases...) per integration, one hour.

Kept in Redis when ``ARKYRA_REDIS_URL`` is set, else in memory. Keys carry a per-integration
generation number, so invalidating an integration (reconnect, delete) is one ``INCR``: every
older entry becomes unreachable and expires on its own.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
import typing
from typing import Any, Protocol

from arkyra.config import Settings
from arkyra.providers import ThirdPartyProvider

DEFAULT_TTL_SECONDS = 3600
HEADER = "x-arkyra-cache"


class FunctionCache(Protocol):
    ttl_seconds: float

    async def get(self, integration_id: str, name: str, payload: Any) -> Any | None: ...

    async def set(self, integration_id: str, name: str, payload: Any, value: Any) -> None: ...

    async def invalidate(self, integration_id: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def is_list_function(provider: type[ThirdPartyProvider], name: str) -> bool:
    """Whether an exposed function returns a list (a catalogue), so its result may be cached."""
    spec = provider.exposed.get(name)
    if spec is None:
        return False
    method = getattr(provider, spec.method_name)
    try:
        returned = typing.get_type_hints(method).get("return")
    except Exception:  # unresolvable annotations: do not cache
        return False
    return (
        returned is list
        or typing.get_origin(returned) is list
        or (inspect.isclass(returned) and issubclass(returned, list))
    )


def payload_digest(payload: Any) -> str:
    canonical = json.dumps(payload or {}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class MemoryFunctionCache:
    """One process's cache: entries expire after ``ttl_seconds``; invalidation drops them."""

    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, dict[tuple[str, str], tuple[float, str]]] = {}
        self._count = 0

    async def get(self, integration_id: str, name: str, payload: Any) -> Any | None:
        entry = self._entries.get(integration_id, {}).get((name, payload_digest(payload)))
        if entry is None:
            return None
        expires_at, encoded = entry
        if expires_at < time.monotonic():
            self._entries[integration_id].pop((name, payload_digest(payload)), None)
            return None
        return json.loads(encoded)

    async def set(self, integration_id: str, name: str, payload: Any, value: Any) -> None:
        if self._count >= self.max_entries:
            self._entries.clear()
            self._count = 0
        bucket = self._entries.setdefault(integration_id, {})
        bucket[(name, payload_digest(payload))] = (
            time.monotonic() + self.ttl_seconds,
            json.dumps(value),
        )
        self._count += 1

    async def invalidate(self, integration_id: str) -> None:
        self._entries.pop(integration_id, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


class RedisFunctionCache:
    """Shared across processes; ``arkyra:fncache:{integration}:{generation}:{name}:{digest}``."""

    def __init__(
        self, redis_url: str, ttl_seconds: float = DEFAULT_TTL_SECONDS, prefix: str = "arkyra"
    ) -> None:
        from redis.asyncio import Redis

        self.ttl_seconds = ttl_seconds
        self.prefix = f"{prefix}:fncache"
        self._redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def _generation_key(self, integration_id: str) -> str:
        return f"{self.prefix}:gen:{integration_id}"

    async def _key(self, integration_id: str, name: str, payload: Any) -> str:
        generation = await self._redis.get(self._generation_key(integration_id))
        gen = int(generation) if generation else 0
        return f"{self.prefix}:{integration_id}:{gen}:{name}:{payload_digest(payload)}"

    async def get(self, integration_id: str, name: str, payload: Any) -> Any | None:
        raw = await self._redis.get(await self._key(integration_id, name, payload))
        return None if raw is None else json.loads(raw)

    async def set(self, integration_id: str, name: str, payload: Any, value: Any) -> None:
        key = await self._key(integration_id, name, payload)
        await self._redis.set(key, json.dumps(value), ex=max(1, int(self.ttl_seconds)))

    async def invalidate(self, integration_id: str) -> None:
        key = self._generation_key(integration_id)
        await self._redis.incr(key)
        await self._redis.expire(key, max(1, int(self.ttl_seconds)) * 2)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def cache_from_settings(
    settings: Settings, ttl_seconds: float = DEFAULT_TTL_SECONDS
) -> FunctionCache:
    if settings.redis_url:
        return RedisFunctionCache(settings.redis_url, ttl_seconds)
    return MemoryFunctionCache(ttl_seconds)
