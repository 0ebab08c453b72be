"""Rate limits per key (organization + route, provider, ...), in Redis when configured.

Built on the ``limits`` library's moving-window strategy; with no ``ARKYRA_REDIS_URL`` the window
lives in memory, which is right for one process and for a new user's first run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from arkyra.config import Settings
from arkyra.errors import ConfigError


@dataclass(frozen=True)
class Decision:
    """Whether a hit is allowed, and what to tell the caller (Retry-After, remaining)."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float

    def headers(self) -> dict[str, str]:
        values = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(0, round(self.reset_after))),
        }
        if not self.allowed:
            values["Retry-After"] = str(max(1, round(self.reset_after)))
        return values


def storage_for(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    if not redis_url.startswith(("redis://", "rediss://")):
        raise ConfigError("ARKYRA_REDIS_URL must start with redis:// or rediss://")
    return storage_from_string(f"async+{redis_url}", implementation="redispy")


class RateLimiter:
    """``await limiter.hit("60/minute", "org-1", "POST /ai/completion")``."""

    def __init__(self, storage: Storage, *, namespace: str = "arkyra") -> None:
        self.storage = storage
        self.namespace = namespace
        self._strategy = MovingWindowRateLimiter(storage)
        self._parsed: dict[str, RateLimitItem] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(storage_for(settings.redis_url))

    def _item(self, limit: str) -> RateLimitItem:
        item = self._parsed.get(limit)
        if item is None:
            try:
                item = parse(limit)
            except ValueError:
                raise ConfigError(f"not a rate limit: {limit!r} (try '60/minute')") from None
            self._parsed[limit] = item
        return item

    async def hit(self, limit: str, *key: str) -> Decision:
        """Count one request against ``limit`` for ``key``; refused hits are not counted."""
        item = self._item(limit)
        allowed = await self._strategy.hit(item, self.namespace, *key)
        stats = await self._strategy.get_window_stats(item, self.namespace, *key)
        return Decision(
            allowed=allowed,
            limit=item.amount,
            remaining=stats.remaining,
            reset_after=max(0.0, stats.reset_time - time.time()),
        )

    async def reset(self) -> None:
        await self.storage.reset()
