"""Idempotency-Key: a repeated key for the same organization replays the stored answer.

The first request with a key claims it (``INSERT ... ON CONFLICT DO NOTHING`` on the
``(organization_id, key)`` primary key) and runs; its answer is stored. A duplicate in the same
process awaits the first one's future; a duplicate in another process polls the row until the
answer is there. Either way the provider is called, and billed, once. A failed first request
deletes its claim, so the client may try again with the same key; a claim whose process died is
taken over after ``stale_after``. Reusing a key with a different body is an error.

Streamed answers use the same claim in two steps (:meth:`IdempotencyStore.begin`, then
:meth:`~IdempotencyStore.complete` or :meth:`~IdempotencyStore.release`), since the answer is
only known when the stream ends; a streamed duplicate is told 409 at once instead of waiting.
A stream cut off after its answer had started is stored as ``incomplete`` (see
:class:`IdempotencyIncomplete`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from arkyra.db.models import AIIdempotency
from arkyra.db.session import Database
from arkyra.errors import ArkyraError, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotencyConflict(InvalidInput):
    """The key was already used for a different request body (HTTP 422)."""


class IdempotencyInProgress(ArkyraError):
    """The first request with this key is still running elsewhere (HTTP 409, retry later)."""


class IdempotencyIncomplete(InvalidInput):
    """The key's first request was a stream cut off after its answer had started (HTTP 422).

    The vendor billed the tokens it produced, so the request is not run again under this key:
    a silent second charge is what the key exists to prevent. ``outcome`` is the stored partial
    answer (content so far, usage, why it stopped); ask again with a new key for a full one.
    """

    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome
        super().__init__(
            "the first request with this Idempotency-Key was cut off after its answer had "
            "started and was billed; it is not run again. Send a new Idempotency-Key to ask again",
            {"Idempotency-Key": "its request ended incomplete; use a new key"},
        )


@dataclass
class Claim:
    """This process owns ``key``: end it with ``complete`` or ``release`` on the store."""

    organization_id: str
    key: str
    future: asyncio.Future[dict[str, Any]]


def request_fingerprint(payload: Any) -> str:
    """A stable hash of the request body, to tell a replay from a misused key."""
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class IdempotencyStore:
    """Claims, answers and replays keyed by (organization, Idempotency-Key)."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: timedelta = timedelta(hours=24),
        stale_after: timedelta = timedelta(minutes=10),
        wait_timeout: float = 120.0,
        poll_interval: float = 0.05,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.stale_after = stale_after
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[dict[str, Any]]]] = {}

    async def run(
        self,
        organization_id: str,
        key: str,
        request_hash: str,
        call: Callable[[], Awaitable[dict[str, Any]]],
    ) -> tuple[dict[str, Any], bool]:
        """The answer for ``key`` and whether it was replayed (``call`` runs at most once)."""
        stored, claim = await self.begin(organization_id, key, request_hash)
        if claim is None:
            return stored or {}, True
        try:
            result = await call()
        except BaseException as exc:
            await self.release(claim, exc)
            raise
        await self.complete(claim, result)
        return result, False

    async def begin(
        self, organization_id: str, key: str, request_hash: str, *, wait: bool = True
    ) -> tuple[dict[str, Any] | None, Claim | None]:
        """Claim ``key`` (``(None, claim)``) or get its stored answer (``(answer, None)``).

        While another request with the key runs, wait for its answer (``wait``) or raise
        :class:`IdempotencyInProgress` at once (streams: a silent wait helps no SSE client).
        """
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(
                "Idempotency-Key must be 1-200 characters", {"Idempotency-Key": "invalid"}
            )
        slot = (organization_id, key)
        running = self._inflight.get(slot)
        if running is not None:
            if running[0] != request_hash:
                raise _conflict()
            if not wait:
                raise _in_progress()
            try:
                answer = await asyncio.wait_for(asyncio.shield(running[1]), self.wait_timeout)
            except TimeoutError:
                raise _in_progress() from None
            return answer, None
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = (request_hash, future)
        claim = Claim(organization_id, key, future)
        try:
            stored = await self._claim(organization_id, key, request_hash, wait=wait)
        except BaseException as exc:
            self._settle(claim, error=exc)
            raise
        if stored is not None:
            self._settle(claim, result=stored)
            return stored, None
        return None, claim

    async def complete(self, claim: Claim, result: dict[str, Any], *, status: str = "done") -> None:
        """Store the answer for ``claim`` (``status="incomplete"``: a partial, billed one)."""
        try:
            await self._complete(claim.organization_id, claim.key, result, status)
        except BaseException as exc:
            self._settle(claim, error=exc)
            raise
        self._settle(claim, result=result)

    async def release(self, claim: Claim, error: BaseException) -> None:
        """Give the key up (nothing was billed worth keeping): the client may try again."""
        try:
            await self._abandon(claim.organization_id, claim.key)
        finally:
            self._settle(claim, error=error)

    def _settle(
        self,
        claim: Claim,
        *,
        result: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Hand the outcome to in-process waiters and forget the in-flight entry."""
        slot = (claim.organization_id, claim.key)
        running = self._inflight.get(slot)
        if running is not None and running[1] is claim.future:
            del self._inflight[slot]
        future = claim.future
        if future.done():
            return
        if error is None:
            future.set_result(result or {})
            return
        if not isinstance(error, Exception):  # cancelled: waiters should retry, not be cancelled
            error = IdempotencyInProgress(
                "the first request with this Idempotency-Key stopped before it finished; retry"
            )
        future.set_exception(error)
        future.exception()  # waiters get it; nobody waiting is fine too

    async def _claim(
        self, organization_id: str, key: str, request_hash: str, *, wait: bool = True
    ) -> dict | None:
        """``None`` when this caller now owns the key, else the stored answer to replay
        (``done``, or ``incomplete`` for a stream cut off after it started)."""
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        deadline = asyncio.get_running_loop().time() + self.wait_timeout
        while True:
            now = datetime.now(UTC)
            async with self.db.transaction() as session:
                inserted = await session.execute(
                    insert(AIIdempotency.__table__)
                    .values(
                        organization_id=organization_id,
                        key=key,
                        request_hash=request_hash,
                        status="pending",
                        response=None,
                        created_at=now,
                        expires_at=now + self.ttl,
                    )
                    .on_conflict_do_nothing(index_elements=["organization_id", "key"])
                    .returning(AIIdempotency.__table__.c.key)
                )
                claimed = inserted.first() is not None
            if claimed:
                return None
            async with self.db.sessions() as session:
                row = (
                    await session.execute(
                        select(AIIdempotency).where(
                            AIIdempotency.organization_id == organization_id,
                            AIIdempotency.key == key,
                        )
                    )
                ).scalar_one_or_none()
            if row is None:
                continue  # the owner gave up between our insert and select: try again
            if _aware(row.expires_at) <= now:
                await self._abandon(organization_id, key)
                continue
            if row.request_hash != request_hash:
                raise _conflict()
            if row.status != "pending":
                return row.response
            if _aware(row.created_at) <= now - self.stale_after and await self._take_over(row):
                return None
            if not wait or asyncio.get_running_loop().time() >= deadline:
                raise _in_progress()
            await asyncio.sleep(self.poll_interval)

    async def _take_over(self, row: AIIdempotency) -> bool:
        async with self.db.transaction() as session:
            result = await session.execute(
                update(AIIdempotency)
                .where(
                    AIIdempotency.organization_id == row.organization_id,
                    AIIdempotency.key == row.key,
                    AIIdempotency.status == "pending",
                    AIIdempotency.created_at == row.created_at,
                )
                .values(created_at=datetime.now(UTC))
                .execution_options(synchronize_session=False)
            )
        return result.rowcount == 1

    async def _complete(
        self, organization_id: str, key: str, result: dict[str, Any], status: str = "done"
    ) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(AIIdempotency)
                .where(AIIdempotency.organization_id == organization_id, AIIdempotency.key == key)
                .values(status=status, response=result)
                .execution_options(synchronize_session=False)
            )

    async def _abandon(self, organization_id: str, key: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                delete(AIIdempotency).where(
                    AIIdempotency.organization_id == organization_id, AIIdempotency.key == key
                )
            )

    async def purge_expired(self) -> int:
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(AIIdempotency).where(AIIdempotency.expires_at < datetime.now(UTC))
            )
        return result.rowcount or 0


def _conflict() -> IdempotencyConflict:
    return IdempotencyConflict(
        "this Idempotency-Key was already used with a different request",
        {"Idempotency-Key": "reused with a different body"},
    )


def _in_progress() -> IdempotencyInProgress:
    return IdempotencyInProgress(
        "a request with this Idempotency-Key is still running; retry later"
    )
