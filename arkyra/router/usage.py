"""One ``ai_usage`` row per attempt, written off the hot path.

:meth:`UsageWriter.record` only appends to an in-memory queue. A background task drains it in
batches (``INSERT ... ON CONFLICT (request_id, attempt_no) DO NOTHING``, so a retried batch never
doubles a row). A batch that fails stays in memory and is retried with exponential backoff; on
shutdown :meth:`UsageWriter.aclose` flushes what is left and, if the database is still down,
spills the rows to a JSON-lines file that the next writer loads first, so a row is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from arkyra.db.models import AIUsage
from arkyra.db.session import Database

log = logging.getLogger(__name__)

USAGE_COLUMNS = (
    "organization_id",
    "request_id",
    "attempt_no",
    "provider",
    "model",
    "task_type",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "total_tokens",
    "cost_usd",
    "price_version",
    "latency_ms",
    "success",
    "error_class",
    "metadata",
    "created_at",
)


class UsageWriter:
    """Batches usage rows into the database in the background; never loses or doubles one."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        max_backoff: float = 5.0,
        spill_path: Path | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        self.db = db
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.spill_path = spill_path
        self.close_timeout = close_timeout
        self._pending: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        self.written = 0

    # -- the hot path ---------------------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        """Queue one attempt's row (no I/O). Starts the background writer on first use."""
        self._pending.append(row)
        self._idle.clear()
        if len(self._pending) >= self.batch_size:
            self._wakeup.set()
        if self._task is None or self._task.done():
            self.start()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._closing = False
        self._load_spill()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, wait_seconds: float = 10.0) -> None:
        """Wait until every queued row is written (tests, shutdown)."""
        if not self._pending:
            return
        self._wakeup.set()
        if self._task is None or self._task.done():
            self.start()
        await asyncio.wait_for(self._idle.wait(), wait_seconds)

    async def aclose(self) -> None:
        """Flush within ``close_timeout``; rows the database would not take are spilled."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.close_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._task = None
        if self._pending:
            self._spill()

    # -- the background writer -------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
                continue
            if len(self._pending) < self.batch_size and not self._closing:
                # Let a burst gather into one batch (this is off the hot path).
                with contextlib.suppress(TimeoutError):
                    self._wakeup.clear()
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.flush_interval)
            batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
            try:
                await self._insert(batch)
            except (SQLAlchemyError, OSError) as exc:
                self.failures += 1
                log.warning("usage rows not written yet (%s); retrying", type(exc).__name__)
                if self._closing and self.failures and backoff >= self.max_backoff:
                    return  # aclose() spills what is left
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            backoff = 0.05
            for _ in batch:
                self._pending.popleft()
            self.written += len(batch)

    async def _insert(self, batch: list[dict[str, Any]]) -> None:
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        statement = insert(AIUsage.__table__).on_conflict_do_nothing(
            index_elements=["request_id", "attempt_no"]
        )
        async with self.db.engine.begin() as connection:  # executemany: one cached statement
            await connection.execute(statement, [_db_row(row) for row in batch])

    # -- spill file ------------------------------------------------------------------------------

    def _spill(self) -> None:
        if self.spill_path is None:
            log.error("%d usage rows could not be written and no spill file is set", self.pending)
            return
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spill_path.open("a") as handle:
            while self._pending:
                handle.write(json.dumps(self._pending.popleft(), default=str) + "\n")

    def _load_spill(self) -> None:
        if self.spill_path is None or not self.spill_path.exists():
            return
        lines = self.spill_path.read_text().splitlines()
        self.spill_path.unlink()
        for line in lines:
            if line.strip():
                self._pending.appendleft(json.loads(line))
        if lines:
            self._idle.clear()


def _db_row(row: dict[str, Any]) -> dict[str, Any]:
    """A queued row as column values (spilled rows come back with strings)."""
    out = {name: row.get(name) for name in USAGE_COLUMNS}
    out["cost_usd"] = Decimal(str(out["cost_usd"] or 0))
    latency = out["latency_ms"]
    out["latency_ms"] = None if latency is None else Decimal(str(round(float(latency), 3)))
    created = out["created_at"]
    if isinstance(created, str):
        out["created_at"] = datetime.fromisoformat(created)
    elif created is None:
        out["created_at"] = datetime.now(UTC)
    for name in ("input_tokens", "output_tokens", "cached_tokens", "total_tokens"):
        out[name] = int(out[name] or 0)
    out["task_type"] = out["task_type"] or "completion"
    out["success"] = bool(out["success"])
    return out


async def usage_summary(
    db: Database, organization_id: str, *, since: datetime | None = None
) -> dict[str, Any]:
    """Usage by provider, task type and day (GET /ai/usage/{org_id})."""
    u = AIUsage
    day = (
        func.date(u.created_at) if db.dialect == "sqlite" else func.date_trunc("day", u.created_at)
    )
    filters = [u.organization_id == organization_id]
    if since is not None:
        filters.append(u.created_at >= since)
    columns = (
        func.count(),
        func.sum(cast(u.success, Integer)),
        func.coalesce(func.sum(u.input_tokens), 0),
        func.coalesce(func.sum(u.output_tokens), 0),
        func.coalesce(func.sum(u.cached_tokens), 0),
        func.coalesce(func.sum(u.cost_usd), 0),
    )

    async def grouped(key: Any) -> list[dict[str, Any]]:
        statement = select(key, *columns).where(*filters).group_by(key).order_by(key)
        async with db.sessions() as session:
            rows = (await session.execute(statement)).all()
        return [
            {
                "key": str(r[0])[:10] if key is day else r[0],
                "attempts": r[1],
                "successes": int(r[2] or 0),
                "input_tokens": int(r[3]),
                "output_tokens": int(r[4]),
                "cached_tokens": int(r[5]),
                "cost_usd": str(Decimal(str(r[6])).quantize(Decimal("0.00000001"))),
            }
            for r in rows
        ]

    return {
        "organization_id": organization_id,
        "by_provider": await grouped(u.provider),
        "by_task_type": await grouped(u.task_type),
        "by_day": await grouped(day),
    }
