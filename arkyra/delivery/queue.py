"""The outbox: every outgoing delivery persisted, claimed with a lease, retried over hours.

A delivery row is created once per (integration, idempotency key): enqueueing the same event
twice returns the first row. Its ``id`` is the ``webhook-id`` receivers de-duplicate on, and it
never changes across retries.

Claiming is safe with several workers. On PostgreSQL the due rows are selected ``FOR UPDATE
SKIP LOCKED`` (rows another worker is claiming are skipped, not waited for) and leased in the
same transaction. On SQLite, which has no row locks, the claim is one conditional ``UPDATE ...
WHERE id IN (due rows) AND <still due>`` that runs under SQLite's single write lock, so two
workers never claim the same row either. A claim sets a lease (``lease_until``) and a token; a
worker that dies mid-send leaves the row to be claimed again when the lease runs out, and results
are recorded only under the token that claimed them (a late, superseded worker cannot overwrite
them). An attempt is counted when it is claimed, so a delivery that keeps crashing its worker
still runs out of attempts.

Retry schedule (delay before each attempt, with +/-20 % jitter): immediately, 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; after ten failed attempts the delivery is ``failed``.
429, 502, 503 and 504 answers wait at least their ``Retry-After``. A 410 disables the endpoint
(and every pending delivery to it) and records why.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from arkyra.db.models import Delivery, DeliveryEndpoint, DeliveryStatus
from arkyra.db.session import Database
from arkyra.delivery import signing
from arkyra.errors import InvalidInput, NotFound
from arkyra.providers.automation._hooks import (
    AttemptResult,
    HookProvider,
    Outcome,
    new_message_id,
)
from arkyra.providers.base import provider_class

#: Delay before attempt 1, 2, ... 10 (the reference's schedule).
RETRY_SCHEDULE_SECONDS: tuple[float, ...] = (
    0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
)  # fmt: skip
MAX_ATTEMPTS = len(RETRY_SCHEDULE_SECONDS)
JITTER = 0.2
#: A receiver's Retry-After is honoured up to this long.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
DEFAULT_LEASE_SECONDS = 120.0
MAX_ERROR_CHARS = 1000
#: The most entries one delivery-log listing returns.
MAX_DELIVERY_LOG = 500

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def retry_delay(
    attempts_made: int, rng: random.Random, retry_after: float | None = None
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts; ``None`` = give up."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = RETRY_SCHEDULE_SECONDS[attempts_made] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def default_idempotency_key(event_type: str, data: Any) -> str:
    """Same event type and data -> same key (canonical JSON, SHA-256)."""
    canonical = json.dumps(
        {"type": event_type, "data": data}, sort_keys=True, separators=(",", ":"), default=str
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Enqueued:
    """The delivery for an event: ``created`` is false when the key was already enqueued."""

    id: str
    status: str
    created: bool


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery this worker holds under ``lease_token`` until ``lease_until``."""

    id: str
    organization_id: str
    integration_id: str
    identifier: str
    event_type: str
    payload: bytes
    attempt: int
    lease_token: str


@dataclass(frozen=True)
class DeliveryLogEntry:
    """One line of an integration's delivery log (API and dashboard)."""

    id: str
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    latency_ms: float | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "event_type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "latency_ms": self.latency_ms,
            "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "delivered_at": iso(self.delivered_at),
        }


@dataclass(frozen=True)
class EndpointState:
    integration_id: str
    disabled: bool
    reason: str | None
    disabled_at: datetime | None


_CLAIM_COLUMNS = (
    Delivery.id,
    Delivery.organization_id,
    Delivery.integration_id,
    Delivery.identifier,
    Delivery.event_type,
    Delivery.payload,
    Delivery.attempts,
)


class Outbox:
    """Enqueue, claim and settle deliveries in the database (``Database.transaction``)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        self.lease_seconds = lease_seconds

    # -- enqueue -----------------------------------------------------------------------------

    async def enqueue(
        self,
        *,
        organization_id: str,
        integration_id: str,
        identifier: str,
        event_type: str,
        data: Any,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Enqueued:
        """Store the event for delivery, once per (integration, idempotency key)."""
        _require_automation_provider(identifier)
        now = self.clock()
        body = signing.envelope(event_type, data, occurred_at or now)
        key = idempotency_key or default_idempotency_key(event_type, data)
        if not key or len(key) > 200:
            raise InvalidInput("invalid idempotency key", {"idempotency_key": "1-200 characters"})
        async with self.db.transaction() as session:
            endpoint = await session.get(DeliveryEndpoint, integration_id)
            disabled = endpoint is not None and endpoint.disabled
            values = {
                "id": new_message_id(),
                "organization_id": organization_id,
                "integration_id": integration_id,
                "identifier": identifier,
                "event_type": event_type,
                "idempotency_key": key,
                "payload": body.decode("ascii"),
                "status": DeliveryStatus.DISABLED if disabled else DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": _disabled_error(endpoint) if disabled else None,
                "created_at": now,
                "updated_at": now,
            }
            insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
            statement = (
                insert(Delivery)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["integration_id", "idempotency_key"])
                .returning(Delivery.id)
            )
            created = (await session.execute(statement)).scalar_one_or_none() is not None
            row = await session.scalar(
                select(Delivery).where(
                    Delivery.integration_id == integration_id, Delivery.idempotency_key == key
                )
            )
            if row is None:  # only if the row vanished between the insert and the read
                raise RuntimeError(f"delivery for key {key!r} disappeared while enqueueing")
            return Enqueued(id=row.id, status=row.status, created=created)

    async def record_sent(
        self,
        *,
        organization_id: str,
        integration_id: str,
        identifier: str,
        message_id: str,
        event_type: str,
        data: Any,
        attempts: int,
        delivered: bool,
        last_status: int | None,
        latency_ms: float | None,
        error: str | None = None,
    ) -> None:
        """Log a delivery that was sent directly (a pipeline's push), so the integration's
        delivery log shows it too. The row is final (delivered or failed): no worker claims it.
        Sending it again under the same ``message_id`` adds its attempts to the same line."""
        _require_automation_provider(identifier)
        now = self.clock()
        values = {
            "id": message_id,
            "organization_id": organization_id,
            "integration_id": integration_id,
            "identifier": identifier,
            "event_type": event_type,
            "idempotency_key": f"sent:{message_id}",
            "payload": signing.envelope(event_type, data, now).decode("ascii"),
            "status": DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED,
            "attempts": max(1, attempts),
            "next_attempt_at": now,
            "last_status": last_status,
            "last_error": None if delivered else _clip(error or "delivery failed"),
            "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
            "created_at": now,
            "updated_at": now,
            "delivered_at": now if delivered else None,
        }
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        statement = insert(Delivery).values(**values)
        changed = {
            name: statement.excluded[name]
            for name in ("status", "last_status", "last_error", "latency_ms", "updated_at")
        }
        changed["attempts"] = Delivery.attempts + statement.excluded.attempts
        changed["delivered_at"] = statement.excluded.delivered_at
        async with self.db.transaction() as session:
            await session.execute(
                statement.on_conflict_do_update(index_elements=["id"], set_=changed)
            )

    # -- claim -------------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to the caller (oldest due first)."""
        now = self.clock()
        token = str(uuid.uuid4())
        due = and_(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        )
        candidates = select(Delivery.id).where(due).order_by(Delivery.next_attempt_at).limit(limit)
        lease = {
            "lease_token": token,
            "lease_until": now + timedelta(seconds=self.lease_seconds),
            "attempts": Delivery.attempts + 1,
            "updated_at": now,
        }
        async with self.db.transaction() as session:
            if self.db.dialect == "postgresql":
                # Lock the chosen rows first (skipping rows other workers hold), then lease them.
                locked = candidates.with_for_update(skip_locked=True)
                ids = list((await session.scalars(locked)).all())
                target = Delivery.id.in_(ids)
            else:
                # One conditional UPDATE: SQLite runs it under its single write lock.
                target = and_(Delivery.id.in_(candidates.scalar_subquery()), due)
            statement = (
                update(Delivery)
                .where(target)
                .values(**lease)
                .returning(*_CLAIM_COLUMNS)
                .execution_options(synchronize_session=False)
            )
            rows = (await session.execute(statement)).all()
        return [
            ClaimedDelivery(
                id=row.id,
                organization_id=row.organization_id,
                integration_id=row.integration_id,
                identifier=row.identifier,
                event_type=row.event_type,
                payload=row.payload.encode("ascii"),
                attempt=row.attempts,
                lease_token=token,
            )
            for row in rows
        ]

    # -- settle ------------------------------------------------------------------------------

    async def record(self, claimed: ClaimedDelivery, result: AttemptResult) -> str | None:
        """Record one attempt's result; the new status, or ``None`` if the lease was lost."""
        [status] = await self.record_many([(claimed, result)])
        return status

    async def record_many(
        self, outcomes: Sequence[tuple[ClaimedDelivery, AttemptResult]]
    ) -> list[str | None]:
        """Record several attempts in one transaction (a group commit); statuses in order."""
        now = self.clock()
        async with self.db.transaction() as session:
            return [
                await self._apply(session, claimed, result, now) for claimed, result in outcomes
            ]

    async def _apply(
        self, session: Any, claimed: ClaimedDelivery, result: AttemptResult, now: datetime
    ) -> str | None:
        values: dict[str, Any] = {
            "last_status": result.status,
            "latency_ms": round(result.latency_ms, 3),
            "lease_token": None,
            "lease_until": None,
            "updated_at": now,
        }
        if result.outcome is Outcome.DELIVERED:
            values.update(status=DeliveryStatus.DELIVERED, delivered_at=now, last_error=None)
        elif result.outcome is Outcome.GONE:
            reason = f"410 Gone on delivery {claimed.id}: {result.error or 'endpoint gone'}"
            values.update(status=DeliveryStatus.DISABLED, last_error=_clip(reason))
            status = await self._settle(session, claimed, values)
            if status is not None:
                await self._mark_disabled(
                    session, claimed.integration_id, claimed.organization_id, reason, now
                )
            return status
        elif result.outcome is Outcome.REFUSED:
            values.update(status=DeliveryStatus.FAILED, last_error=_clip(result.error))
        else:
            delay = retry_delay(claimed.attempt, self.rng, result.retry_after)
            if delay is None:
                error = f"gave up after {claimed.attempt} attempts; last: {result.error}"
                values.update(status=DeliveryStatus.FAILED, last_error=_clip(error))
            else:
                values.update(
                    last_error=_clip(result.error),
                    next_attempt_at=now + timedelta(seconds=delay),
                )
        return await self._settle(session, claimed, values)

    async def abandon(self, claimed: ClaimedDelivery, reason: str) -> str | None:
        """Fail a delivery that can never be sent (its integration was removed)."""
        values = {
            "status": DeliveryStatus.FAILED,
            "last_error": _clip(reason),
            "lease_token": None,
            "lease_until": None,
            "updated_at": self.clock(),
        }
        async with self.db.transaction() as session:
            return await self._settle(session, claimed, values)

    async def postpone(self, claimed: ClaimedDelivery, reason: str) -> str | None:
        """A failure before sending (credentials unavailable): retry on the schedule."""
        result = AttemptResult(Outcome.RETRY, None, 0.0, reason)
        return await self.record(claimed, result)

    async def _settle(
        self, session: Any, claimed: ClaimedDelivery, values: dict[str, Any]
    ) -> str | None:
        statement = (
            update(Delivery)
            .where(Delivery.id == claimed.id, Delivery.lease_token == claimed.lease_token)
            .values(**values)
            .returning(Delivery.status)
            .execution_options(synchronize_session=False)
        )
        return (await session.execute(statement)).scalar_one_or_none()

    async def disable_endpoint(
        self, integration_id: str, organization_id: str, reason: str
    ) -> None:
        """Stop delivering to an integration (e.g. after a 410); pending deliveries stop too."""
        async with self.db.transaction() as session:
            await self._mark_disabled(
                session, integration_id, organization_id, reason, self.clock()
            )

    async def _mark_disabled(
        self, session: Any, integration_id: str, organization_id: str, reason: str, now: datetime
    ) -> None:
        endpoint = await session.get(DeliveryEndpoint, integration_id)
        if endpoint is None:
            endpoint = DeliveryEndpoint(
                integration_id=integration_id, organization_id=organization_id
            )
            session.add(endpoint)
        endpoint.disabled = True
        endpoint.disabled_reason = _clip(reason)
        endpoint.disabled_at = now
        endpoint.updated_at = now
        await session.flush()
        await session.execute(
            update(Delivery)
            .where(
                Delivery.integration_id == integration_id,
                Delivery.status == DeliveryStatus.PENDING,
            )
            .values(
                status=DeliveryStatus.DISABLED,
                last_error=_clip(f"endpoint disabled: {reason}"),
                lease_token=None,
                lease_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    async def enable_endpoint(self, integration_id: str, *, requeue: bool = True) -> int:
        """Deliver to an integration again (after a reconnect); ``requeue`` restarts the
        deliveries a 410 stopped. Returns how many were requeued."""
        now = self.clock()
        async with self.db.transaction() as session:
            endpoint = await session.get(DeliveryEndpoint, integration_id)
            if endpoint is not None:
                endpoint.disabled = False
                endpoint.disabled_reason = None
                endpoint.disabled_at = None
                endpoint.updated_at = now
            if not requeue:
                return 0
            result = await session.execute(
                update(Delivery)
                .where(
                    Delivery.integration_id == integration_id,
                    Delivery.status == DeliveryStatus.DISABLED,
                )
                .values(
                    status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now
                )
                .execution_options(synchronize_session=False)
            )
            return result.rowcount or 0

    # -- reading -----------------------------------------------------------------------------

    async def endpoint(self, integration_id: str) -> EndpointState:
        async with self.db.transaction() as session:
            row = await session.get(DeliveryEndpoint, integration_id)
        if row is None:
            return EndpointState(integration_id, False, None, None)
        return EndpointState(
            integration_id, row.disabled, row.disabled_reason, aware(row.disabled_at)
        )

    async def log(
        self,
        organization_id: str,
        integration_id: str,
        *,
        limit: int = 50,
        status: str | None = None,
    ) -> list[DeliveryLogEntry]:
        return await delivery_log(
            self.db, organization_id, integration_id, limit=limit, status=status
        )


async def delivery_log(
    db: Database,
    organization_id: str,
    integration_id: str,
    *,
    limit: int = 50,
    status: str | None = None,
) -> list[DeliveryLogEntry]:
    """An integration's deliveries, newest first: status, attempts, last error, latency.

    Scoped by organization: another organization's integration has an empty log.
    """
    query = (
        select(Delivery)
        .where(
            Delivery.organization_id == organization_id, Delivery.integration_id == integration_id
        )
        .order_by(Delivery.created_at.desc(), Delivery.id)
        .limit(max(1, min(limit, MAX_DELIVERY_LOG)))
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    async with db.transaction() as session:
        rows = (await session.scalars(query)).all()
    return [
        DeliveryLogEntry(
            id=row.id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status=row.last_status,
            last_error=row.last_error,
            latency_ms=float(row.latency_ms) if row.latency_ms is not None else None,
            created_at=aware(row.created_at),  # type: ignore[arg-type]
            next_attempt_at=aware(row.next_attempt_at)
            if row.status == DeliveryStatus.PENDING
            else None,
            delivered_at=aware(row.delivered_at),
        )
        for row in rows
    ]


def _require_automation_provider(identifier: str) -> None:
    """Only the automation providers (webhooks, Zapier, Make, n8n, Apprise) take deliveries."""
    try:
        cls = provider_class(identifier)
    except NotFound:
        cls = None
    if cls is None or not issubclass(cls, HookProvider):
        raise InvalidInput(
            "invalid delivery", {"identifier": f"{identifier!r} is not an automation provider"}
        )


def _clip(text: str | None) -> str | None:
    return text[:MAX_ERROR_CHARS] if text else text


def _disabled_error(endpoint: DeliveryEndpoint | None) -> str:
    reason = endpoint.disabled_reason if endpoint is not None else None
    return _clip(f"endpoint disabled: {reason or 'no reason recorded'}") or ""
