"""The sender loop: claim due deliveries, send each through the SSRF guard, record the result.

A provider that sends deliveries itself rather than as one HTTP request (apprise, which makes
its own requests) has ``deliver_direct`` (:class:`DirectDelivery`); the worker calls that
instead, and claims, retries, backoff and the delivery log stay the same.

Several workers (processes or hosts) can share one database: claims never overlap and a lease
brings back the deliveries of a worker that died mid-send (see :mod:`arkyra.delivery.queue`).
The HTTP client, the DNS resolver, the clock and the jitter source are injectable, so tests
run hours of retries in milliseconds. At most ``concurrency`` requests are in flight; their
results are written in grouped transactions (:class:`GroupCommit`), each delivery waiting
until its own result is durable.

Wiring (the API or a Prefect deployment does this)::

    store = CredentialStore(...)

    async def credentials(org_id: str, integration_id: str) -> Mapping[str, str]:
        return (await store.credentials_for_use(org_id, integration_id))[1]

    async def disabled(org_id: str, integration_id: str, reason: str) -> None:
        await store.mark(integration_id, IntegrationStatus.ERROR, reason)

    worker = DeliveryWorker(db, credentials, settings=settings, on_disabled=disabled)
    await worker.run(stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import httpx

from arkyra.config import Settings, get_settings
from arkyra.db.models import DeliveryStatus
from arkyra.db.session import Database
from arkyra.delivery.queue import DEFAULT_LEASE_SECONDS, ClaimedDelivery, Clock, Outbox, utcnow
from arkyra.errors import ArkyraError, NotFound
from arkyra.http.ssrf import Resolver, guarded_client
from arkyra.providers.automation._hooks import (
    AttemptResult,
    HookProvider,
    Outcome,
    OutgoingMessage,
    send_prepared,
)
from arkyra.providers.base import get_provider

logger = logging.getLogger(__name__)

#: ``(organization_id, integration_id) -> credentials``; raises ``NotFound`` when removed.
CredentialsLookup = Callable[[str, str], Awaitable[Mapping[str, str]]]
#: ``(organization_id, integration_id, reason)``: called once when a 410 disables an endpoint.
DisabledHook = Callable[[str, str, str], Awaitable[None]]

#: The reference asks for a 15-30 s timeout per attempt.
MAX_ATTEMPT_TIMEOUT_SECONDS = 30.0


@runtime_checkable
class DirectDelivery(Protocol):
    """A provider that sends one attempt itself (apprise) instead of as an HTTP request.

    ``deliver_direct`` must not raise: every outcome is an :class:`AttemptResult`.
    """

    async def deliver_direct(
        self, credentials: Mapping[str, str], message: OutgoingMessage
    ) -> AttemptResult: ...


class GroupCommit:
    """Coalesces the results of concurrent deliveries into few transactions.

    Each delivery awaits its own result being written (so a returned status is durable), but
    while one transaction is being written the next results queue up and go together in the
    following one: fifty deliveries finishing at once cost a handful of commits, not fifty
    (on SQLite, fifty writers would otherwise queue on the database lock).
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._waiting: list[tuple[ClaimedDelivery, AttemptResult, asyncio.Future[str | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, claimed: ClaimedDelivery, result: AttemptResult) -> str | None:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((claimed, result, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                statuses = await self.outbox.record_many([(c, r) for c, r, _ in batch])
            except Exception as exc:  # every waiter sees the failure; leases bring them back
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), status in zip(batch, statuses, strict=True):
                if not future.done():
                    future.set_result(status)


class DeliveryWorker:
    """Delivers what the outbox holds; ``run_once`` for one batch, ``run`` until stopped."""

    def __init__(
        self,
        db: Database,
        credentials: CredentialsLookup,
        *,
        settings: Settings | None = None,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        lease_seconds: float | None = None,
        batch_size: int = 100,
        concurrency: int = 50,
        on_disabled: DisabledHook | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.timeout = min(self.settings.http_timeout_seconds, MAX_ATTEMPT_TIMEOUT_SECONDS)
        if lease_seconds is None:
            # A claimed delivery may wait for ceil(batch / concurrency) sends before its own.
            rounds = math.ceil(batch_size / concurrency)
            lease_seconds = max(DEFAULT_LEASE_SECONDS, rounds * self.timeout + 60)
        self.outbox = Outbox(db, clock=clock, rng=rng, lease_seconds=lease_seconds)
        self.credentials = credentials
        self.resolver = resolver
        self.clock = clock
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.on_disabled = on_disabled
        self._client = client
        self._owns_client = client is None
        self._providers: dict[str, HookProvider] = {}
        self._results = GroupCommit(self.outbox)
        self._sending = asyncio.Semaphore(concurrency)

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """The injected client, else one guarded client (no redirects, pinned addresses)."""
        if self._client is None:
            self._client = guarded_client(self.settings, resolver=self.resolver)
        return self._client

    def provider(self, identifier: str) -> HookProvider:
        provider = self._providers.get(identifier)
        if provider is None:
            candidate = get_provider(identifier, settings=self.settings, client=self.client)
            if not isinstance(candidate, HookProvider):
                raise NotFound(f"{identifier!r} is not an automation provider")
            candidate.resolver = self.resolver
            provider = self._providers[identifier] = candidate
        return provider

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the loop ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt each; returns how many were tried."""
        claimed = await self.outbox.claim(self.batch_size)
        if not claimed:
            return 0
        await asyncio.gather(*(self.deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def drain(self, max_batches: int = 1000) -> int:
        """Attempt everything due now (batch after batch); returns the number of attempts."""
        total = 0
        for _ in range(max_batches):
            done = await self.run_once()
            total += done
            if not done:
                break
        return total

    async def run(self, stop: asyncio.Event | None = None, *, idle_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set, sleeping ``idle_seconds`` when nothing is due."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:  # the database may be briefly unavailable: keep the loop alive
                logger.exception("delivery batch failed")
                done = 0
            if not done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_seconds)

    # -- one delivery ------------------------------------------------------------------------

    async def deliver(self, claimed: ClaimedDelivery) -> str | None:
        """One attempt for one claimed delivery; returns its new status."""
        try:
            return await self._deliver(claimed)
        except Exception as exc:  # never lose the claim silently: record and retry later
            logger.exception("delivery %s: unexpected error", claimed.id)
            return await self.outbox.postpone(claimed, f"internal error ({type(exc).__name__})")

    async def _deliver(self, claimed: ClaimedDelivery) -> str | None:
        try:
            credentials = await self.credentials(claimed.organization_id, claimed.integration_id)
        except NotFound:
            return await self.outbox.abandon(claimed, "the integration was removed")
        except ArkyraError as exc:
            return await self.outbox.postpone(
                claimed, f"credentials unavailable ({type(exc).__name__})"
            )
        message = OutgoingMessage(claimed.id, claimed.event_type, claimed.payload)
        timestamp = int(self.clock().timestamp())
        try:
            provider = self.provider(claimed.identifier)
            prepared = (
                None  # it sends by itself, below
                if isinstance(provider, DirectDelivery)
                else provider.prepare_delivery(credentials, message, timestamp)
            )
        except ArkyraError as exc:  # messages of these errors never carry the secret
            return await self.outbox.postpone(claimed, f"cannot prepare the request: {exc}")
        async with self._sending:  # only the sending part is bounded; recording is grouped
            if prepared is None:
                assert isinstance(provider, DirectDelivery)  # for the type checker
                result = await provider.deliver_direct(credentials, message)
            else:
                result = await send_prepared(
                    self.client,
                    prepared,
                    settings=self.settings,
                    resolver=self.resolver,
                    attempt_timeout=self.timeout,
                )
        status = await self._results.record(claimed, result)
        logger.info(
            "delivery %s attempt %d: %s (HTTP %s, %.0f ms)",
            claimed.id,
            claimed.attempt,
            status or "lease lost",
            result.status,
            result.latency_ms,
        )
        if status == DeliveryStatus.DISABLED and result.outcome is Outcome.GONE:
            await self._notify_disabled(claimed, result.error or "410 Gone")
        return status

    async def _notify_disabled(self, claimed: ClaimedDelivery, reason: str) -> None:
        if self.on_disabled is None:
            return
        try:
            await self.on_disabled(claimed.organization_id, claimed.integration_id, reason)
        except Exception:
            logger.exception("on_disabled hook failed for integration %s", claimed.integration_id)
