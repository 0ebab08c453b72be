"""Retries on the same provider: tenacity, driven by the error taxonomy and Retry-After.

Only :class:`~arkyra.errors.Transient` and :class:`~arkyra.errors.RateLimited` are retried, and a
rate limit only while its wait fits under ``max_wait``. Everything else goes straight back to the
caller, who decides about fallback.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from arkyra.errors import RateLimited, Transient

T = TypeVar("T")

_backoff = wait_random_exponential(multiplier=0.5, max=8)


def parse_retry_after(
    headers: Mapping[str, str], *, now: float | None = None, max_wait: float | None = None
) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date) or ``retry-after-ms``.

    Negative or unparseable values give ``None``; the result is capped at ``max_wait``.
    """
    now = time.time() if now is None else now
    seconds = _delta(headers.get("retry-after-ms"), scale=1000.0)
    raw = headers.get("retry-after")
    if seconds is None and raw is not None:
        seconds = _delta(raw, scale=1.0)
        if seconds is None:
            try:
                parsed = email.utils.parsedate_to_datetime(raw.strip())
            except (TypeError, ValueError, IndexError):
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                seconds = max(0.0, parsed.timestamp() - now)  # a date in the past: now
    if seconds is None:
        return None
    if max_wait is not None:
        seconds = min(seconds, max_wait)
    return seconds


def _delta(raw: str | None, *, scale: float) -> float | None:
    """A non-negative, finite number of seconds, or ``None``."""
    if raw is None:
        return None
    try:
        value = float(raw.strip()) / scale
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return value


def _retryable(max_wait: float) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return exc.retry_after is None or exc.retry_after <= max_wait
        return isinstance(exc, Transient)

    return check


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return exc.retry_after
    return _backoff(state)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    max_wait: float,
    retry_if: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``attempt`` up to ``attempts`` times while it raises a retryable provider error.

    ``retry_if`` narrows what is retried further (e.g. a POST that may have been processed).
    """
    allowed = _retryable(max_wait)

    def should_retry(exc: BaseException) -> bool:
        return allowed(exc) and (retry_if is None or retry_if(exc))

    retrying = AsyncRetrying(
        retry=retry_if_exception(should_retry),
        stop=stop_after_attempt(attempts),
        wait=_wait,
        reraise=True,
    )
    async for try_ in retrying:
        with try_:
            return await attempt()
    raise AssertionError("unreachable")  # pragma: no cover
