"""Per-provider circuit breakers, in memory or shared through Redis.

closed -> open: after ``failure_threshold`` consecutive failures, or when at least
``min_samples`` calls in the last ``window_seconds`` failed at ``failure_rate`` or more.
open -> half-open: after ``cooldown_seconds``; exactly ONE probe is let through.
half-open -> closed on the probe's success, -> open again on its failure. A probe that never
reports back (crashed process) frees the slot after ``probe_timeout_seconds``.

Only provider-health errors count as failures (Transient, RateLimited, QuotaExhausted), never our
own mistakes (BadRequest, ContentRejected). :meth:`CircuitBreaker.trip` forces a provider open for
a while (an exhausted platform balance, a revoked platform key).

With Redis every transition is one Lua script, so processes sharing the breaker never race.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from arkyra.errors import QuotaExhausted, RateLimited, Transient

FAILURE_CLASSES: tuple[type[Exception], ...] = (Transient, RateLimited, QuotaExhausted)


def counts_as_failure(exc: BaseException) -> bool:
    """Whether an error says something about the provider's health."""
    return isinstance(exc, FAILURE_CLASSES)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(StrEnum):
    """What :meth:`CircuitBreaker.allow` decided."""

    ALLOWED = "allowed"
    PROBE = "probe"
    REJECTED = "rejected"

    @property
    def admitted(self) -> bool:
        return self is not Admission.REJECTED


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    window_seconds: float = 60.0
    min_samples: int = 20
    failure_rate: float = 0.5
    cooldown_seconds: float = 30.0
    probe_timeout_seconds: float = 30.0
    max_samples: int = 200


@dataclass
class _Local:
    """One provider's breaker in memory (the same rules as the Lua scripts below)."""

    state: BreakerState = BreakerState.CLOSED
    open_until: float = 0.0
    probe_until: float = 0.0
    consecutive: int = 0
    events: deque[tuple[float, bool]] = field(default_factory=deque)

    def allow(self, now: float, policy: BreakerPolicy) -> Admission:
        if self.state is BreakerState.CLOSED:
            return Admission.ALLOWED
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return Admission.REJECTED
            self.state = BreakerState.HALF_OPEN
        if now >= self.probe_until:
            self.probe_until = now + policy.probe_timeout_seconds
            return Admission.PROBE
        return Admission.REJECTED

    def record(self, now: float, ok: bool, policy: BreakerPolicy) -> BreakerState:
        if self.state is BreakerState.HALF_OPEN:
            if ok:
                self._close()
            else:
                self._open(now + policy.cooldown_seconds)
            return self.state
        if self.state is BreakerState.OPEN:
            return self.state
        self.events.append((now, ok))
        while len(self.events) > policy.max_samples:
            self.events.popleft()
        if ok:
            self.consecutive = 0
            return self.state
        self.consecutive += 1
        horizon = now - policy.window_seconds
        recent = [e for e in self.events if e[0] >= horizon]
        failures = sum(1 for e in recent if not e[1])
        rate_tripped = len(recent) >= policy.min_samples and failures >= policy.failure_rate * len(
            recent
        )
        if self.consecutive >= policy.failure_threshold or rate_tripped:
            self._open(now + policy.cooldown_seconds)
        return self.state

    def _open(self, until: float) -> None:
        self.state = BreakerState.OPEN
        self.open_until = until
        self.probe_until = 0.0
        self.consecutive = 0
        self.events.clear()

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.open_until = 0.0
        self.probe_until = 0.0
        self.consecutive = 0
        self.events.clear()


# KEYS[1] = the breaker hash. ARGV: now, probe_timeout.
_ALLOW_LUA = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return 'allowed' end
local now = tonumber(ARGV[1])
if state == 'open' then
  local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
  if now < open_until then return 'rejected' end
  redis.call('HSET', KEYS[1], 'state', 'half_open')
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[2])))
  return 'probe'
end
return 'rejected'
"""

# KEYS[1] = hash, KEYS[2] = events list ("time:1" ok, "time:0" failure), newest first.
# ARGV: now, ok, threshold, window, min_samples, rate, cooldown, max_samples, ttl.
_RECORD_LUA = """
local now = tonumber(ARGV[1])
local ok = ARGV[2] == '1'
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local function open()
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tostring(now + tonumber(ARGV[7])),
             'probe_until', '0', 'consecutive', '0')
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  return 'open'
end
if state == 'half_open' then
  if ok then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'open_until', '0', 'probe_until', '0',
               'consecutive', '0')
    redis.call('DEL', KEYS[2])
    return 'closed'
  end
  return open()
end
if state == 'open' then return 'open' end
redis.call('LPUSH', KEYS[2], ARGV[1] .. ':' .. (ok and '1' or '0'))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[8]) - 1)
redis.call('EXPIRE', KEYS[2], ARGV[9])
if ok then
  redis.call('HSET', KEYS[1], 'consecutive', '0')
  return 'closed'
end
local consecutive = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
redis.call('EXPIRE', KEYS[1], ARGV[9])
if consecutive >= tonumber(ARGV[3]) then return open() end
local horizon = now - tonumber(ARGV[4])
local total, failures = 0, 0
for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local sep = string.find(item, ':')
  if tonumber(string.sub(item, 1, sep - 1)) >= horizon then
    total = total + 1
    if string.sub(item, sep + 1) == '0' then failures = failures + 1 end
  end
end
if total >= tonumber(ARGV[5]) and failures >= tonumber(ARGV[6]) * total then return open() end
return 'closed'
"""

# KEYS[1] = hash, KEYS[2] = events. ARGV: open_until, ttl.
_TRIP_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local wanted = tonumber(ARGV[1])
if current > wanted and redis.call('HGET', KEYS[1], 'state') == 'open' then wanted = current end
redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tostring(wanted), 'probe_until', '0',
           'consecutive', '0')
redis.call('DEL', KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 'open'
"""


class CircuitBreaker:
    """Breakers for every provider; ``redis`` (a ``redis.asyncio.Redis``) shares them."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        redis: Any = None,
        prefix: str = "arkyra:breaker",
        clock: Any = time.time,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self._local: dict[str, _Local] = {}
        self._scripts: dict[str, Any] = {}
        self._ttl = int(max(self.policy.window_seconds, self.policy.cooldown_seconds) * 10 + 3600)

    @classmethod
    def from_url(cls, redis_url: str | None, policy: BreakerPolicy | None = None) -> CircuitBreaker:
        if not redis_url:
            return cls(policy)
        import redis.asyncio as aioredis

        return cls(policy, redis=aioredis.Redis.from_url(redis_url, decode_responses=True))

    def _keys(self, provider: str) -> list[str]:
        return [f"{self.prefix}:{provider}", f"{self.prefix}:{provider}:events"]

    def _script(self, name: str, body: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(body)
        return script

    def _state(self, provider: str) -> _Local:
        local = self._local.get(provider)
        if local is None:
            local = self._local[provider] = _Local()
        return local

    async def allow(self, provider: str) -> Admission:
        """Whether a call to ``provider`` may start now (``PROBE``: the one half-open trial)."""
        now = self.clock()
        if self.redis is None:
            return self._state(provider).allow(now, self.policy)
        result = await self._script("allow", _ALLOW_LUA)(
            keys=self._keys(provider), args=[repr(now), self.policy.probe_timeout_seconds]
        )
        return Admission(result)

    def record_success_now(self, provider: str) -> bool:
        """Record a success at once when the breaker is in memory (no Redis); ``False`` means
        the caller must ``await record(provider, ok=True)`` instead. Saves a task per request."""
        if self.redis is not None:
            return False
        self._state(provider).record(self.clock(), True, self.policy)
        return True

    async def record(self, provider: str, *, ok: bool, reason: str = "") -> BreakerState:
        """Report a call's outcome (``ok=False`` only for errors that count as failures).

        A failure that opens the breaker raises an alert (:func:`arkyra.alerts.breaker_opened`).
        """
        if ok:
            return await self._record(provider, ok=True)
        before = await self._current(provider)
        after = await self._record(provider, ok=False)
        if after is BreakerState.OPEN and before is not BreakerState.OPEN:
            await _alert_opened(provider, reason or "repeated failures")
        return after

    async def _current(self, provider: str) -> BreakerState:
        if self.redis is None:
            return self._state(provider).state
        return BreakerState(await self.redis.hget(self._keys(provider)[0], "state") or "closed")

    async def _record(self, provider: str, *, ok: bool) -> BreakerState:
        now = self.clock()
        policy = self.policy
        if self.redis is None:
            return self._state(provider).record(now, ok, policy)
        result = await self._script("record", _RECORD_LUA)(
            keys=self._keys(provider),
            args=[
                repr(now),
                "1" if ok else "0",
                policy.failure_threshold,
                policy.window_seconds,
                policy.min_samples,
                policy.failure_rate,
                policy.cooldown_seconds,
                policy.max_samples,
                self._ttl,
            ],
        )
        return BreakerState(result)

    async def record_outcome(self, provider: str, error: BaseException | None) -> None:
        """Record success, or a failure when the error is about the provider's health."""
        if error is None:
            await self.record(provider, ok=True)
        elif counts_as_failure(error):
            await self.record(provider, ok=False, reason=f"last error: {type(error).__name__}")

    async def trip(self, provider: str, seconds: float) -> None:
        """Force ``provider`` open for ``seconds`` (then half-open as usual)."""
        until = self.clock() + seconds
        if self.redis is None:
            local = self._state(provider)
            local._open(max(until, local.open_until if local.state is BreakerState.OPEN else 0))
            return
        await self._script("trip", _TRIP_LUA)(
            keys=self._keys(provider), args=[repr(until), self._ttl]
        )

    async def state(self, provider: str) -> dict[str, Any]:
        """The provider's breaker as JSON (for GET /ai/providers)."""
        now = self.clock()
        if self.redis is None:
            local = self._local.get(provider) or _Local()
            state, open_until = local.state, local.open_until
        else:
            raw = await self.redis.hgetall(self._keys(provider)[0])
            state = BreakerState(raw.get("state", "closed"))
            open_until = float(raw.get("open_until", 0) or 0)
        if state is BreakerState.OPEN and now >= open_until:
            state = BreakerState.HALF_OPEN  # the next call will be the probe
        return {
            "state": str(state),
            "retry_in_seconds": round(open_until - now, 3) if state is BreakerState.OPEN else None,
        }

    async def reset(self, provider: str) -> None:
        self._local.pop(provider, None)
        if self.redis is not None:
            await self.redis.delete(*self._keys(provider))

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


async def _alert_opened(provider: str, reason: str) -> None:
    """Tell the operators (never raises: :mod:`arkyra.alerts` swallows its own failures)."""
    from arkyra import alerts  # lazily: the breaker stays free of the database layer

    await alerts.breaker_opened(provider, f"circuit breaker opened ({reason})")
