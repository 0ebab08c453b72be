"""Same-provider retries inside a pipeline task, for failures the provider layer hands back.

``ThirdPartyProvider.request`` already retries what is certainly safe, a few times, quickly.
A pipeline can afford to wait longer before it gives an item up, so paid tasks call the
provider through :func:`call_again`, which retries the same call while that cannot pay twice:

- a replayable call (a read, a poll (``poll_attempts``), a delivery the receiver
  de-duplicates by ``webhook-id``) after any transient failure or rate limit;
- a paid POST only on the chain's last provider (before that, the next provider is the
  better try: ``arkyra.pipelines.fallback``), and only after a 429, a request that never
  left (``request_sent`` False) or a status in ``resend_statuses`` (by default 503: the
  vendor refused the request before acting on it). A 500, 502, 504 or a broken connection
  after sending is ambiguous: it goes back to the chain (fallback or failure), never to the
  same vendor again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prefect.logging import get_run_logger

from arkyra.errors import ProviderError, RateLimited, Transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a pipeline keeps trying one provider call before the step fails over."""

    attempts: int = 6
    #: Polls of a submitted job that fail after the provider's own retries: by default the
    #: render is reported lost at once, and the next run picks the job up again
    #: (``arkyra.tasks._paid.PendingJobs``) instead of paying for another one.
    poll_attempts: int = 1
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    resend_statuses: frozenset[int] = frozenset({503})

    def delay(self, attempt: int, exc: ProviderError) -> float:
        """Seconds before attempt ``attempt + 1``: the vendor's Retry-After, else jittered
        exponential backoff."""
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_delay_seconds)
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def safe_to_repeat(self, exc: BaseException, *, replayable: bool) -> bool:
        """Whether calling again cannot make the vendor do (and bill) the work twice."""
        if not isinstance(exc, Transient | RateLimited):
            return False
        if replayable or isinstance(exc, RateLimited):
            return True
        if exc.details.get("request_sent") is False:
            return True
        return exc.status in self.resend_statuses


async def call_again(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    replayable: bool,
    what: str,
    attempts: int | None = None,
) -> T:
    """``await call()``, again after a failure ``policy`` deems safe to repeat (at most
    ``attempts`` calls, ``policy.attempts`` by default)."""
    limit = policy.attempts if attempts is None else attempts
    attempt = 1
    while True:
        try:
            return await call()
        except ProviderError as exc:
            if attempt >= limit or not policy.safe_to_repeat(exc, replayable=replayable):
                raise
            delay = policy.delay(attempt, exc)
            get_run_logger().info(
                "%s: %s, trying the same provider again in %.2fs (%d of %d)",
                what, type(exc).__name__, delay, attempt + 1, limit,
            )  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1
