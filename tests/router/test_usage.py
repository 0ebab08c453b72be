"""Usage rows: written off the hot path, exactly once, surviving database failures."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from arkyra.db.models import AIUsage
from arkyra.db.session import Database
from arkyra.router.usage import UsageWriter, usage_summary


def row(request_id: str, attempt_no: int = 1, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "organization_id": "org",
        "request_id": request_id,
        "attempt_no": attempt_no,
        "provider": "glm",
        "model": "glm-4.7",
        "task_type": "completion",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 2,
        "total_tokens": 17,
        "cost_usd": Decimal("0.00001234"),
        "price_version": "v1",
        "latency_ms": 12.5,
        "success": True,
        "error_class": None,
        "metadata": {"k": 1},
        "created_at": datetime.now(UTC),
    }
    values.update(overrides)
    return values


async def stored(db: Database) -> list[AIUsage]:
    async with db.sessions() as session:
        return list((await session.execute(select(AIUsage).order_by(AIUsage.id))).scalars())


class FlakyWriter(UsageWriter):
    """Fails the first ``failures`` inserts, like a database that is briefly down."""

    def __init__(self, *args: Any, failures: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remaining_failures = failures
        self.insert_calls = 0

    async def _insert(self, batch: list[dict[str, Any]]) -> None:
        self.insert_calls += 1
        if self.remaining_failures:
            self.remaining_failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is down"))
        await super()._insert(batch)


async def test_rows_are_batched_in_the_background_exactly_once(db: Database) -> None:
    writer = UsageWriter(db, flush_interval=0.01)
    for i in range(30):
        writer.record(row(f"req-{i}"))
    assert writer.pending == 30  # record() did no I/O
    await writer.flush()
    rows = await stored(db)
    assert len(rows) == 30
    assert rows[0].cost_usd == Decimal("0.00001234")
    assert rows[0].metadata_json == {"k": 1}
    await writer.aclose()


async def test_a_repeated_row_is_not_doubled(db: Database) -> None:
    writer = UsageWriter(db, flush_interval=0.01)
    writer.record(row("dup", 1))
    await writer.flush()
    writer.record(row("dup", 1, cost_usd=Decimal("9")))
    writer.record(row("dup", 2))
    await writer.flush()
    rows = await stored(db)
    assert [(r.request_id, r.attempt_no) for r in rows] == [("dup", 1), ("dup", 2)]
    assert rows[0].cost_usd == Decimal("0.00001234")
    await writer.aclose()


async def test_database_failure_is_retried_and_nothing_is_lost(db: Database) -> None:
    writer = FlakyWriter(db, flush_interval=0.01, failures=2)
    for i in range(5):
        writer.record(row(f"flaky-{i}"))
    await writer.flush(wait_seconds=10)
    assert writer.failures == 2
    assert writer.insert_calls >= 3
    assert len(await stored(db)) == 5
    await writer.aclose()


async def test_shutdown_flushes_pending_rows(db: Database) -> None:
    writer = UsageWriter(db, flush_interval=5.0)  # would wait long for a batch
    writer.record(row("late"))
    await writer.aclose()
    assert [r.request_id for r in await stored(db)] == ["late"]


async def test_rows_the_database_refuses_at_shutdown_are_spilled_then_loaded(
    db: Database, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    down = FlakyWriter(db, flush_interval=0.01, failures=10**6, spill_path=spill, close_timeout=0.3)
    down.record(row("spilled-1"))
    down.record(row("spilled-2", 2))
    await down.aclose()
    assert spill.exists()
    assert len(spill.read_text().splitlines()) == 2
    assert await stored(db) == []

    back = UsageWriter(db, flush_interval=0.01, spill_path=spill)
    back.start()
    await back.flush()
    rows = await stored(db)
    assert sorted((r.request_id, r.attempt_no) for r in rows) == [
        ("spilled-1", 1),
        ("spilled-2", 2),
    ]
    assert rows[0].cost_usd == Decimal("0.00001234")
    assert not spill.exists()
    await back.aclose()


async def test_summary_groups_by_provider_task_and_day(db: Database) -> None:
    writer = UsageWriter(db, flush_interval=0.01)
    writer.record(row("a", provider="glm", task_type="summary"))
    writer.record(row("b", provider="openai", success=False, cost_usd=Decimal(0)))
    writer.record(row("c", provider="openai"))
    writer.record(row("d", organization_id="other"))
    await writer.aclose()
    summary = await usage_summary(db, "org")
    by_provider = {r["key"]: r for r in summary["by_provider"]}
    assert by_provider["openai"]["attempts"] == 2
    assert by_provider["openai"]["successes"] == 1
    assert by_provider["glm"]["cost_usd"] == "0.00001234"
    assert {r["key"] for r in summary["by_task_type"]} == {"summary", "completion"}
    assert summary["by_day"][0]["key"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert summary["by_day"][0]["attempts"] == 3
