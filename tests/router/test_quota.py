"""Budgets: reserve the worst case, settle the real cost, release on failure, and never let
concurrent reservations overshoot (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arkyra.db.models import AIBudget, AIBudgetReservation
from arkyra.db.session import Database
from arkyra.router.quota import QuotaExceeded, QuotaService, period_bounds


async def _budget(db: Database, org: str) -> AIBudget:
    async with db.sessions() as session:
        return (
            await session.execute(select(AIBudget).where(AIBudget.organization_id == org))
        ).scalar_one()


async def test_no_policy_means_no_limit_and_no_row(db: Database) -> None:
    quota = QuotaService(db)
    assert await quota.reserve("free-org", Decimal("1000"), 10**9) is None
    assert await quota.view("free-org") is None
    assert (await quota.snapshot("free-org"))["limited"] is False


async def test_reserve_settle_release_move_the_counters(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("1.00"), limit_tokens=10_000)
    first = await quota.reserve("org", Decimal("0.30"), 3_000, request_id="r1")
    second = await quota.reserve("org", Decimal("0.20"), 1_000, request_id="r2")
    assert first
    assert second
    row = await _budget(db, "org")
    assert (row.reserved_usd_nanos, row.reserved_tokens) == (500_000_000, 4_000)

    assert await quota.settle(first, Decimal("0.05"), 700)
    assert not await quota.settle(first, Decimal("0.05"), 700)  # exactly once
    assert await quota.release(second)
    assert not await quota.release(second)
    await quota.flush()  # settled spend reaches the database in the background
    row = await _budget(db, "org")
    assert (row.spent_usd_nanos, row.spent_tokens) == (50_000_000, 700)
    # the rest stays leased to this process until it is idle or closes
    assert (row.reserved_usd_nanos, row.reserved_tokens) == (450_000_000, 3_300)
    await quota.aclose()
    row = await _budget(db, "org")
    assert (row.reserved_usd_nanos, row.reserved_tokens) == (0, 0)
    assert (row.spent_usd_nanos, row.spent_tokens) == (50_000_000, 700)

    view = await quota.view("org")
    assert view is not None
    assert view.remaining_usd == Decimal("0.95")
    assert view.remaining_tokens == 9_300
    snap = await quota.snapshot("org")
    assert snap["usd"]["spent"] == "0.050000000"
    assert snap["tokens"]["spent"] == 700


async def test_usd_exhaustion_names_the_budget_and_the_reset(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("0.10"))
    await quota.reserve("org", Decimal("0.08"), 10)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.reserve("org", Decimal("0.05"), 10)
    error = caught.value
    assert error.budget == "usd"
    _, resets_at = period_bounds("month", datetime.now(UTC))
    assert error.resets_at == resets_at
    assert "USD budget" in str(error)
    assert resets_at.isoformat() in str(error)
    assert error.retry_after_seconds() > 0
    assert error.to_dict()["budget"] == "usd"


async def test_token_exhaustion_names_the_token_budget(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_tokens=1_000, period="day")
    await quota.reserve("org", Decimal(0), 900)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.reserve("org", Decimal(0), 200)
    assert caught.value.budget == "tokens"
    assert caught.value.resets_at == period_bounds("day", datetime.now(UTC))[1]


@pytest.mark.parametrize("lease_fraction", [0.0, 0.1])
async def test_concurrent_reservations_never_exceed_the_limit(
    db: Database, lease_fraction: float
) -> None:
    """60 requests race for a budget that holds 25 of them, from 4 "processes": never more
    than 25 win (exactly 25 without leases; leases may strand a few small remainders)."""
    quotas = [QuotaService(db, lease_fraction=lease_fraction) for _ in range(4)]
    await quotas[0].set_policy("race", limit_usd=Decimal("2.50"))

    async def one(i: int) -> tuple[QuotaService, object] | None:
        quota = quotas[i % 4]
        try:
            hold = await quota.reserve("race", Decimal("0.10"), 100, request_id=f"r{i}")
        except QuotaExceeded:
            return None
        return quota, hold

    results = await asyncio.gather(*(one(i) for i in range(60)))
    won = sum(1 for r in results if r is not None)
    row = await _budget(db, "race")
    assert row.reserved_usd_nanos + row.spent_usd_nanos <= row.limit_usd_nanos
    assert won * 100_000_000 <= row.reserved_usd_nanos
    if lease_fraction == 0:
        assert won == 25
        assert row.reserved_usd_nanos == 2_500_000_000
    else:
        assert 21 <= won <= 25
    async with db.sessions() as session:
        leases = await session.scalar(
            select(func.sum(AIBudgetReservation.usd_nanos)).where(
                AIBudgetReservation.status == "reserved"
            )
        )
    assert leases == row.reserved_usd_nanos  # reservation rows account for every hold
    for result in results:
        if result is not None:
            await result[0].release(result[1])  # type: ignore[arg-type]
    for quota in quotas:
        await quota.aclose()
    assert (await _budget(db, "race")).reserved_usd_nanos == 0


async def test_one_process_uses_its_lease_without_a_round_trip_per_call(db: Database) -> None:
    quota = QuotaService(db, lease_fraction=0.5)
    await quota.set_policy("lease", limit_usd=Decimal("1"))
    holds = [await quota.reserve("lease", Decimal("0.1"), 1) for _ in range(5)]
    async with db.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(AIBudgetReservation))
    assert rows == 1  # one lease row for five holds
    for hold in holds:
        assert hold is not None
        await quota.settle(hold, Decimal("0.01"), 1)
    view = await quota.view("lease")
    assert view is not None
    assert view.remaining_usd == Decimal("0.95")
    await quota.aclose()
    row = await _budget(db, "lease")
    assert (row.spent_usd_nanos, row.reserved_usd_nanos) == (50_000_000, 0)


async def test_concurrent_settles_keep_the_books_exact(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("books", limit_usd=Decimal("100"))
    holds = await asyncio.gather(*(quota.reserve("books", Decimal("1"), 10) for _ in range(20)))
    await asyncio.gather(*(quota.settle(h, Decimal("0.25"), 5) for h in holds if h))
    await quota.aclose()
    row = await _budget(db, "books")
    assert (row.reserved_usd_nanos, row.spent_usd_nanos) == (0, 5_000_000_000)
    assert row.spent_tokens == 100


async def test_expired_reservations_are_released(db: Database) -> None:
    quota = QuotaService(db, reservation_ttl=timedelta(seconds=1))
    await quota.set_policy("crash", limit_usd=Decimal("1"))
    await quota.reserve("crash", Decimal("0.6"), 1)
    assert await quota.release_expired(datetime.now(UTC)) == 0
    assert await quota.release_expired(datetime.now(UTC) + timedelta(seconds=5)) == 1
    row = await _budget(db, "crash")
    assert row.reserved_usd_nanos == 0
    other_process = QuotaService(db)
    assert await other_process.reserve("crash", Decimal("0.9"), 1)  # usable again


async def test_changing_the_policy_updates_the_current_period(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("grow", limit_usd=Decimal("0.1"))
    await quota.reserve("grow", Decimal("0.1"), 1)
    with pytest.raises(QuotaExceeded):
        await quota.reserve("grow", Decimal("0.1"), 1)
    await quota.set_policy("grow", limit_usd=Decimal("1"))
    assert await quota.reserve("grow", Decimal("0.1"), 1)


def test_period_bounds() -> None:
    key, resets = period_bounds("month", datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert (key, resets) == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))
    key, resets = period_bounds("day", datetime(2026, 11, 25, 17, 0, tzinfo=UTC))
    assert (key, resets) == ("2026-11-25", datetime(2026, 11, 26, tzinfo=UTC))


async def test_an_unlimited_dimension_is_counted_but_never_held(db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("usd-only", limit_usd=Decimal("1"))
    for _ in range(3):
        hold = await quota.reserve("usd-only", Decimal("0.01"), 1_000)
        assert hold is not None
        await quota.settle(hold, Decimal("0.001"), 400)
    await quota.aclose()
    row = await _budget(db, "usd-only")
    assert (row.spent_tokens, row.reserved_tokens) == (1_200, 0)
    assert (row.spent_usd_nanos, row.reserved_usd_nanos) == (3_000_000, 0)
