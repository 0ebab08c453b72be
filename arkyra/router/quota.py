"""Per-organization AI budgets in USD and tokens per calendar period (a month by default).

Before a call the router *reserves* the call's worst-case cost with one atomic conditional
UPDATE on the period's ``ai_budgets`` row::

    UPDATE ai_budgets SET reserved = reserved + :x
    WHERE org = :org AND period = :p AND spent + reserved + :x <= limit  RETURNING ...

so concurrent requests (in any number of processes) can never overshoot the limit: the row lock
(PostgreSQL) or the single writer (SQLite) serialises them, and the condition is re-checked on the
locked row. A reservation row records the hold; after the call it is *settled* (the real cost
moves to ``spent``) or *released* (failure), each exactly once (guarded by its ``status``). Holds
left by a crashed process expire and are released by :meth:`QuotaService.release_expired`.

Organizations without a policy have no limits and cost no database round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from arkyra.db.models import AIBudget, AIBudgetPolicy, AIBudgetReservation, new_id
from arkyra.db.session import Database
from arkyra.errors import ArkyraError, InvalidInput
from arkyra.router.pricing import from_nanos, to_nanos

log = logging.getLogger(__name__)

Period = Literal["month", "day"]
BudgetKind = Literal["usd", "tokens"]
PERIODS: tuple[str, ...] = ("month", "day")
SWEEP_SECONDS = 60.0


class QuotaExceeded(ArkyraError):
    """The organization's budget cannot cover the call: which budget, and when it resets."""

    def __init__(
        self,
        budget: BudgetKind,
        *,
        organization_id: str,
        limit: Decimal | int,
        used: Decimal | int,
        requested: Decimal | int,
        resets_at: datetime,
    ) -> None:
        self.budget = budget
        self.organization_id = organization_id
        self.limit = limit
        self.used = used
        self.requested = requested
        self.resets_at = resets_at
        unit = "USD" if budget == "usd" else "tokens"
        super().__init__(
            f"AI {unit} budget exhausted: {used} of {limit} {unit} used or reserved, this call "
            f"may need up to {requested}; the budget resets at {resets_at.isoformat()}"
        )

    def retry_after_seconds(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return max(1, int((self.resets_at - now).total_seconds()) + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "QuotaExceeded",
            "budget": self.budget,
            "message": str(self),
            "limit": str(self.limit),
            "used": str(self.used),
            "requested": str(self.requested),
            "resets_at": self.resets_at.isoformat(),
        }


def period_bounds(period: str, now: datetime) -> tuple[str, datetime]:
    """The period's key (``2026-11`` / ``2026-11-25``) and when the next one starts (UTC)."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start + timedelta(days=1)
    if period == "month":
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return now.strftime("%Y-%m"), datetime(year, month, 1, tzinfo=UTC)
    raise InvalidInput(f"unknown budget period {period!r}", {"period": "use month or day"})


@dataclass(frozen=True)
class Policy:
    period: str
    limit_usd_nanos: int | None
    limit_tokens: int | None


@dataclass(frozen=True)
class BudgetView:
    """What is left in the current period (``None``: no limit of that kind)."""

    period_key: str
    resets_at: datetime
    limit_usd: Decimal | None
    remaining_usd: Decimal | None
    limit_tokens: int | None
    remaining_tokens: int | None

    def near_limit(self, fraction: float) -> bool:
        """Whether less than ``fraction`` of either budget is left."""
        usd_low = (
            self.limit_usd is not None
            and self.remaining_usd is not None
            and self.remaining_usd < self.limit_usd * Decimal(str(fraction))
        )
        tokens_low = (
            self.limit_tokens is not None
            and self.remaining_tokens is not None
            and self.remaining_tokens < self.limit_tokens * fraction
        )
        return usd_low or tokens_low

    def fits(self, usd: Decimal, tokens: int) -> bool:
        if self.remaining_usd is not None and usd > self.remaining_usd:
            return False
        return not (self.remaining_tokens is not None and tokens > self.remaining_tokens)


@dataclass(frozen=True)
class Reservation:
    id: str
    organization_id: str
    period_key: str
    usd_nanos: int
    tokens: int


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class QuotaService:
    """Reserve / settle / release against ``ai_budgets``; policies and views cached briefly."""

    def __init__(
        self,
        db: Database,
        *,
        reservation_ttl: timedelta = timedelta(minutes=15),
        policy_ttl_seconds: float = 30.0,
        view_ttl_seconds: float = 2.0,
        lease_fraction: float = 0.02,
        lease_idle_seconds: float = 5.0,
        flush_interval: float = 0.5,
    ) -> None:
        self.db = db
        self.reservation_ttl = reservation_ttl
        self.policy_ttl_seconds = policy_ttl_seconds
        self.view_ttl_seconds = view_ttl_seconds
        self.lease_fraction = lease_fraction
        self.lease_idle_seconds = lease_idle_seconds
        self.flush_interval = flush_interval
        self._policies: dict[str, tuple[float, Policy | None]] = {}
        self._views: dict[str, tuple[float, BudgetView]] = {}
        self._leases: dict[str, _Lease] = {}
        self._holds: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._flusher: asyncio.Task[None] | None = None

    # -- policies ------------------------------------------------------------------------------

    async def set_policy(
        self,
        organization_id: str,
        *,
        limit_usd: Decimal | None = None,
        limit_tokens: int | None = None,
        period: str = "month",
    ) -> None:
        """Set (or replace) the organization's limits; the current period's row follows."""
        if period not in PERIODS:
            raise InvalidInput(f"unknown budget period {period!r}", {"period": "month or day"})
        usd_nanos = None if limit_usd is None else to_nanos(Decimal(limit_usd))
        insert = _insert(self.db.dialect)
        now = datetime.now(UTC)
        values = {"period": period, "limit_usd_nanos": usd_nanos, "limit_tokens": limit_tokens}
        async with self.db.transaction() as session:
            statement = insert(AIBudgetPolicy).values(
                organization_id=organization_id, updated_at=now, **values
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["organization_id"], set_={**values, "updated_at": now}
                )
            )
            period_key, _ = period_bounds(period, now)
            await session.execute(
                update(AIBudget)
                .where(
                    AIBudget.organization_id == organization_id, AIBudget.period_key == period_key
                )
                .values(limit_usd_nanos=usd_nanos, limit_tokens=limit_tokens, updated_at=now)
            )
        self._policies.pop(organization_id, None)
        self._views.pop(organization_id, None)
        lease = self._leases.get(organization_id)
        if lease is not None:  # the next hold leases again under the new limits
            await self._flush_lease(lease, give_back=True)

    async def policy(self, organization_id: str) -> Policy | None:
        cached = self._policies.get(organization_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.policy_ttl_seconds:
            return cached[1]
        async with self.db.sessions() as session:
            row = await session.get(AIBudgetPolicy, organization_id)
        policy = Policy(row.period, row.limit_usd_nanos, row.limit_tokens) if row else None
        self._policies[organization_id] = (now, policy)
        return policy

    # -- views ---------------------------------------------------------------------------------

    async def view(self, organization_id: str) -> BudgetView | None:
        """What is left (cached for ``view_ttl_seconds``; the reservation is the real check)."""
        policy = await self.policy(organization_id)
        if policy is None:
            return None
        cached = self._views.get(organization_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.view_ttl_seconds:
            return self._with_lease(organization_id, cached[1])
        period_key, resets_at = period_bounds(policy.period, datetime.now(UTC))
        async with self.db.sessions() as session:
            row = await session.get(AIBudget, (organization_id, period_key))
        if row is None:
            counters = (policy.limit_usd_nanos, policy.limit_tokens, 0, 0)
        else:
            counters = (
                row.limit_usd_nanos,
                row.limit_tokens,
                row.spent_usd_nanos + row.reserved_usd_nanos,
                row.spent_tokens + row.reserved_tokens,
            )
        view = self._remember(organization_id, period_key, resets_at, *counters)
        return self._with_lease(organization_id, view)

    def _with_lease(self, organization_id: str, view: BudgetView) -> BudgetView:
        """What this process holds in its lease but has not used is still available to it."""
        lease = self._leases.get(organization_id)
        if lease is None or lease.period_key != view.period_key:
            return view
        return replace(
            view,
            remaining_usd=None
            if view.remaining_usd is None
            else view.remaining_usd + from_nanos(max(0, lease.free_usd)),
            remaining_tokens=None
            if view.remaining_tokens is None
            else view.remaining_tokens + max(0, lease.free_tokens),
        )

    def _remember(
        self,
        organization_id: str,
        period_key: str,
        resets_at: datetime,
        limit_usd_nanos: int | None,
        limit_tokens: int | None,
        used_usd_nanos: int,
        used_tokens: int,
    ) -> BudgetView:
        view = BudgetView(
            period_key=period_key,
            resets_at=resets_at,
            limit_usd=None if limit_usd_nanos is None else from_nanos(limit_usd_nanos),
            remaining_usd=None
            if limit_usd_nanos is None
            else from_nanos(max(0, limit_usd_nanos - used_usd_nanos)),
            limit_tokens=limit_tokens,
            remaining_tokens=None if limit_tokens is None else max(0, limit_tokens - used_tokens),
        )
        self._views[organization_id] = (time.monotonic(), view)
        return view

    async def snapshot(self, organization_id: str) -> dict[str, Any]:
        """The current period's limits and counters (GET /ai/quota)."""
        lease = self._leases.get(organization_id)
        if lease is not None:
            await self._flush_lease(lease, give_back=False)
        policy = await self.policy(organization_id)
        if policy is None:
            return {"organization_id": organization_id, "limited": False}
        period_key, resets_at = period_bounds(policy.period, datetime.now(UTC))
        async with self.db.sessions() as session:
            row = await session.get(AIBudget, (organization_id, period_key))
        get = (lambda name: getattr(row, name)) if row else (lambda name: 0)
        limit_usd = row.limit_usd_nanos if row else policy.limit_usd_nanos
        limit_tokens = row.limit_tokens if row else policy.limit_tokens
        return {
            "organization_id": organization_id,
            "limited": True,
            "period": policy.period,
            "period_key": period_key,
            "resets_at": resets_at.isoformat(),
            "usd": {
                "limit": None if limit_usd is None else str(from_nanos(limit_usd)),
                "spent": str(from_nanos(get("spent_usd_nanos"))),
                "reserved": str(from_nanos(get("reserved_usd_nanos"))),
            },
            "tokens": {
                "limit": limit_tokens,
                "spent": get("spent_tokens"),
                "reserved": get("reserved_tokens"),
            },
        }

    # -- reserve / settle / release --------------------------------------------------------------

    async def reserve(
        self,
        organization_id: str,
        usd: Decimal,
        tokens: int,
        *,
        request_id: str | None = None,
    ) -> Reservation | None:
        """Hold ``usd`` and ``tokens`` or raise :class:`QuotaExceeded`; ``None``: no limits.

        The hold comes from this process's lease when it has room (no I/O); otherwise the lease
        grows through the atomic conditional UPDATE, or the request is refused."""
        policy = await self.policy(organization_id)
        if policy is None:
            return None
        period_key, resets_at = period_bounds(policy.period, datetime.now(UTC))
        usd_nanos = to_nanos(usd)
        while True:
            lease = self._leases.get(organization_id)
            fits = lease is not None and lease.period_key == period_key
            if fits and lease.fits(usd_nanos, tokens):  # type: ignore[union-attr]
                break  # no await between this check and taking the hold below
            lock = self._locks.setdefault(organization_id, asyncio.Lock())
            async with lock:
                lease = self._leases.get(organization_id)
                if (
                    lease is None
                    or lease.period_key != period_key
                    or not lease.fits(usd_nanos, tokens)
                ):
                    await self._grow(
                        organization_id, policy, period_key, resets_at, usd_nanos, tokens,
                        request_id,
                    )  # fmt: skip
        lease.inflight_usd += usd_nanos
        lease.inflight_tokens += tokens
        lease.last_used = time.monotonic()
        reservation = Reservation(new_id(), organization_id, period_key, usd_nanos, tokens)
        self._holds[reservation.id] = lease
        self._ensure_flusher()
        return reservation

    async def _grow(
        self,
        organization_id: str,
        policy: Policy,
        period_key: str,
        resets_at: datetime,
        usd_nanos: int,
        tokens: int,
        request_id: str | None,
    ) -> None:
        """Grow (or start) this process's lease so that it can take ``usd_nanos``/``tokens``."""
        lease = self._leases.get(organization_id)
        if lease is not None and lease.period_key != period_key:
            await self._flush_lease(lease, give_back=True)
            lease = None
        # A dimension without a limit is counted (spent) but never held.
        usd_limited = policy.limit_usd_nanos is not None
        tokens_limited = policy.limit_tokens is not None
        need_usd = max(0, usd_nanos - (lease.free_usd if lease else 0)) if usd_limited else 0
        need_tokens = max(0, tokens - (lease.free_tokens if lease else 0)) if tokens_limited else 0
        chunk_usd = max(need_usd, _fraction(policy.limit_usd_nanos, self.lease_fraction))
        chunk_tokens = max(need_tokens, _fraction(policy.limit_tokens, self.lease_fraction))
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            row = None
            tries = [(chunk_usd, chunk_tokens)]
            if (need_usd, need_tokens) != tries[0]:
                tries.append((need_usd, need_tokens))  # near the limit: exactly what is missing
            for grow_usd, grow_tokens in tries:
                probe = Reservation("", organization_id, period_key, grow_usd, grow_tokens)
                row = await self._hold(session, probe)
                if row is None:
                    await self._create_period(
                        session, organization_id, period_key, resets_at, policy
                    )
                    row = await self._hold(session, probe)
                if row is not None:
                    break
            if row is None:
                wanted = Reservation("", organization_id, period_key, usd_nanos, tokens)
                await self._refuse(session, wanted, resets_at, have=lease)
            if lease is None:
                lease = _Lease(
                    new_id(), organization_id, period_key, resets_at, usd_limited, tokens_limited
                )
                session.add(
                    AIBudgetReservation(
                        id=lease.row_id,
                        organization_id=organization_id,
                        period_key=period_key,
                        request_id=request_id,
                        usd_nanos=probe.usd_nanos,
                        tokens=probe.tokens,
                        status="reserved",
                        created_at=now,
                        expires_at=now + self.reservation_ttl,
                    )
                )
            else:
                await session.execute(
                    update(AIBudgetReservation)
                    .where(AIBudgetReservation.id == lease.row_id)
                    .values(
                        usd_nanos=AIBudgetReservation.usd_nanos + probe.usd_nanos,
                        tokens=AIBudgetReservation.tokens + probe.tokens,
                        expires_at=now + self.reservation_ttl,
                    )
                    .execution_options(synchronize_session=False)
                )
        lease.size_usd += probe.usd_nanos
        lease.size_tokens += probe.tokens
        lease.touched = time.monotonic()
        self._leases[organization_id] = lease
        self._remember(organization_id, period_key, resets_at, *row)

    async def _hold(self, session: AsyncSession, r: Reservation) -> tuple[Any, ...] | None:
        """The atomic conditional UPDATE; the new counters, or ``None`` when it would overshoot."""
        b = AIBudget
        statement = (
            update(b)
            .where(
                b.organization_id == r.organization_id,
                b.period_key == r.period_key,
                or_(
                    b.limit_usd_nanos.is_(None),
                    b.spent_usd_nanos + b.reserved_usd_nanos + r.usd_nanos <= b.limit_usd_nanos,
                ),
                or_(
                    b.limit_tokens.is_(None),
                    b.spent_tokens + b.reserved_tokens + r.tokens <= b.limit_tokens,
                ),
            )
            .values(
                reserved_usd_nanos=b.reserved_usd_nanos + r.usd_nanos,
                reserved_tokens=b.reserved_tokens + r.tokens,
            )
            .returning(
                b.limit_usd_nanos,
                b.limit_tokens,
                b.spent_usd_nanos + b.reserved_usd_nanos,
                b.spent_tokens + b.reserved_tokens,
            )
            .execution_options(synchronize_session=False)
        )
        row = (await session.execute(statement)).first()
        return tuple(row) if row is not None else None

    async def _create_period(
        self,
        session: AsyncSession,
        organization_id: str,
        period_key: str,
        resets_at: datetime,
        policy: Policy,
    ) -> None:
        insert = _insert(self.db.dialect)
        await session.execute(
            insert(AIBudget)
            .values(
                organization_id=organization_id,
                period_key=period_key,
                limit_usd_nanos=policy.limit_usd_nanos,
                limit_tokens=policy.limit_tokens,
                spent_usd_nanos=0,
                reserved_usd_nanos=0,
                spent_tokens=0,
                reserved_tokens=0,
                resets_at=resets_at,
                updated_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["organization_id", "period_key"])
        )

    async def _refuse(
        self,
        session: AsyncSession,
        r: Reservation,
        resets_at: datetime,
        have: _Lease | None = None,
    ) -> None:
        """Raise QuotaExceeded naming the budget that cannot cover the hold."""
        row = (
            await session.execute(
                select(AIBudget).where(
                    and_(
                        AIBudget.organization_id == r.organization_id,
                        AIBudget.period_key == r.period_key,
                    )
                )
            )
        ).scalar_one()
        # What this process holds but does not use counts as available to it.
        used_usd = row.spent_usd_nanos + row.reserved_usd_nanos - (have.free_usd if have else 0)
        used_tokens = row.spent_tokens + row.reserved_tokens - (have.free_tokens if have else 0)
        self._remember(
            r.organization_id,
            r.period_key,
            resets_at,
            row.limit_usd_nanos,
            row.limit_tokens,
            used_usd,
            used_tokens,
        )
        if row.limit_usd_nanos is not None and used_usd + r.usd_nanos > row.limit_usd_nanos:
            raise QuotaExceeded(
                "usd",
                organization_id=r.organization_id,
                limit=from_nanos(row.limit_usd_nanos),
                used=from_nanos(used_usd),
                requested=from_nanos(r.usd_nanos),
                resets_at=resets_at,
            )
        raise QuotaExceeded(
            "tokens",
            organization_id=r.organization_id,
            limit=row.limit_tokens or 0,
            used=used_tokens,
            requested=r.tokens,
            resets_at=resets_at,
        )

    async def settle(self, reservation: Reservation, usd: Decimal, tokens: int) -> bool:
        """Replace the hold by the real cost; ``False`` when it was already settled/released."""
        return self.settle_now(reservation, usd, tokens)

    def settle_now(self, reservation: Reservation, usd: Decimal, tokens: int) -> bool:
        """:meth:`settle` without a coroutine: holds live in memory (the flusher persists
        them), so the router settles inline instead of spawning a task per request."""
        lease = self._holds.pop(reservation.id, None)
        if lease is None:
            return False
        lease.inflight_usd -= reservation.usd_nanos
        lease.inflight_tokens -= reservation.tokens
        lease.consumed_usd += to_nanos(usd)
        lease.consumed_tokens += tokens
        return True

    async def release(self, reservation: Reservation) -> bool:
        """Drop the hold (the call failed and cost nothing)."""
        lease = self._holds.pop(reservation.id, None)
        if lease is None:
            return False
        lease.inflight_usd -= reservation.usd_nanos
        lease.inflight_tokens -= reservation.tokens
        return True

    # -- persistence -------------------------------------------------------------------------------

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        """Persist settled spend every ``flush_interval``; now and then release the holds of
        processes that died (their reservation rows expired)."""
        next_sweep = 0.0
        while self._leases:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush(idle_only_give_back=True)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    await self.release_expired()
            except SQLAlchemyError as exc:  # keep the books in memory and try again
                log.warning("budget flush failed (%s); retrying", type(exc).__name__)

    async def flush(self, *, idle_only_give_back: bool = False) -> None:
        """Write settled spend to the database; with ``idle_only_give_back``, also give back
        the unused part of leases idle for ``lease_idle_seconds``."""
        now = time.monotonic()
        for lease in list(self._leases.values()):
            idle = (
                lease.inflight_usd == 0
                and lease.inflight_tokens == 0
                and now - lease.last_used >= self.lease_idle_seconds
            )
            await self._flush_lease(lease, give_back=idle and idle_only_give_back)

    async def return_leases(self) -> None:
        """Flush everything and give every unused lease amount back (shutdown, tests)."""
        for lease in list(self._leases.values()):
            await self._flush_lease(lease, give_back=True)

    async def aclose(self) -> None:
        await self.return_leases()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def _flush_lease(self, lease: _Lease, *, give_back: bool) -> None:
        """Move settled spend from reserved to spent; with ``give_back``, return the lease's
        unused part (only when nothing is in flight)."""
        spent_usd, spent_tokens = lease.consumed_usd, lease.consumed_tokens
        # Spend in a dimension without a limit was never held, so it leaves nothing reserved.
        held_usd = spent_usd if lease.usd_limited else 0
        held_tokens = spent_tokens if lease.tokens_limited else 0
        give_back = give_back and lease.inflight_usd == 0 and lease.inflight_tokens == 0
        back_usd = lease.size_usd - held_usd if give_back else 0
        back_tokens = lease.size_tokens - held_tokens if give_back else 0
        refresh = time.monotonic() - lease.touched > self.reservation_ttl.total_seconds() / 3
        if not (spent_usd or spent_tokens or give_back or refresh):
            return
        now = datetime.now(UTC)
        r, b = AIBudgetReservation, AIBudget
        async with self.db.transaction() as session:
            values: dict[str, Any] = {
                "usd_nanos": r.usd_nanos - held_usd - back_usd,
                "tokens": r.tokens - held_tokens - back_tokens,
                "expires_at": now + self.reservation_ttl,
            }
            if give_back:
                values["status"] = "released"
            owned = await session.execute(
                update(r)
                .where(r.id == lease.row_id, r.status == "reserved")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            alive = owned.rowcount == 1
            await session.execute(
                update(b)
                .where(b.organization_id == lease.organization_id, b.period_key == lease.period_key)
                .values(
                    spent_usd_nanos=b.spent_usd_nanos + spent_usd,
                    spent_tokens=b.spent_tokens + spent_tokens,
                    # an expired lease's hold was already given back by release_expired()
                    reserved_usd_nanos=b.reserved_usd_nanos
                    - ((held_usd + back_usd) if alive else 0),
                    reserved_tokens=b.reserved_tokens
                    - ((held_tokens + back_tokens) if alive else 0),
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        lease.touched = time.monotonic()
        lease.consumed_usd -= spent_usd
        lease.consumed_tokens -= spent_tokens
        lease.size_usd -= held_usd + back_usd
        lease.size_tokens -= held_tokens + back_tokens
        if (give_back or not alive) and self._leases.get(lease.organization_id) is lease:
            del self._leases[lease.organization_id]
        self._views.pop(lease.organization_id, None)

    async def release_expired(self, now: datetime | None = None) -> int:
        """Release holds whose process never settled them (crash); returns how many."""
        now = now or datetime.now(UTC)
        r, b = AIBudgetReservation, AIBudget
        async with self.db.sessions() as session:
            stale = list(
                (
                    await session.execute(
                        select(r.id, r.organization_id, r.period_key, r.usd_nanos, r.tokens).where(
                            r.status == "reserved", r.expires_at < now
                        )
                    )
                ).all()
            )
        released = 0
        for row_id, org, period_key, usd_nanos, tokens in stale:
            async with self.db.transaction() as session:
                claimed = await session.execute(
                    update(r)
                    .where(r.id == row_id, r.status == "reserved")
                    .values(status="expired")
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:
                    continue
                await session.execute(
                    update(b)
                    .where(b.organization_id == org, b.period_key == period_key)
                    .values(
                        reserved_usd_nanos=b.reserved_usd_nanos - usd_nanos,
                        reserved_tokens=b.reserved_tokens - tokens,
                    )
                    .execution_options(synchronize_session=False)
                )
            released += 1
            self._views.pop(org, None)
        return released


@dataclass(eq=False)
class _Lease:
    """Budget this process reserved in the database and hands out without I/O."""

    row_id: str
    organization_id: str
    period_key: str
    resets_at: datetime
    usd_limited: bool = True
    tokens_limited: bool = True
    size_usd: int = 0
    size_tokens: int = 0
    inflight_usd: int = 0
    inflight_tokens: int = 0
    consumed_usd: int = 0
    consumed_tokens: int = 0
    last_used: float = 0.0
    touched: float = 0.0

    @property
    def free_usd(self) -> int:
        return self.size_usd - self.inflight_usd - self.consumed_usd

    @property
    def free_tokens(self) -> int:
        return self.size_tokens - self.inflight_tokens - self.consumed_tokens

    def fits(self, usd_nanos: int, tokens: int) -> bool:
        usd_ok = not self.usd_limited or usd_nanos <= self.free_usd
        return usd_ok and (not self.tokens_limited or tokens <= self.free_tokens)


def _fraction(limit: int | None, fraction: float) -> int:
    return 0 if limit is None else int(limit * fraction)
