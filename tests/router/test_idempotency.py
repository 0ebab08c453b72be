"""Idempotency-Key: replay the stored answer, never call (or bill) twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from arkyra.db.session import Database
from arkyra.router.idempotency import (
    IdempotencyConflict,
    IdempotencyInProgress,
    IdempotencyStore,
    request_fingerprint,
)


class Counter:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> dict:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("upstream failed")
        return {"answer": self.calls}


async def test_a_repeated_key_replays_the_first_answer(db: Database) -> None:
    store = IdempotencyStore(db)
    call = Counter()
    first, replayed = await store.run("org", "key-1", "h", call)
    assert (first, replayed) == ({"answer": 1}, False)
    second, replayed = await store.run("org", "key-1", "h", call)
    assert (second, replayed) == ({"answer": 1}, True)
    assert call.calls == 1


async def test_keys_are_per_organization(db: Database) -> None:
    store = IdempotencyStore(db)
    call = Counter()
    await store.run("org-a", "same", "h", call)
    await store.run("org-b", "same", "h", call)
    assert call.calls == 2


async def test_concurrent_duplicates_in_one_process_call_once(db: Database) -> None:
    store = IdempotencyStore(db)
    call = Counter(delay=0.05)
    results = await asyncio.gather(*(store.run("org", "burst", "h", call) for _ in range(10)))
    assert call.calls == 1
    assert {r[0]["answer"] for r in results} == {1}
    assert sum(1 for r in results if not r[1]) == 1


async def test_concurrent_duplicates_across_processes_wait_for_the_first(db: Database) -> None:
    first_process = IdempotencyStore(db)
    second_process = IdempotencyStore(db, poll_interval=0.01)
    call = Counter(delay=0.2)
    (a, a_replayed), (b, b_replayed) = await asyncio.gather(
        first_process.run("org", "cross", "h", call),
        second_process.run("org", "cross", "h", call),
    )
    assert call.calls == 1
    assert a == b == {"answer": 1}
    assert sorted([a_replayed, b_replayed]) == [False, True]


async def test_a_waiter_gives_up_while_the_first_is_still_running(db: Database) -> None:
    first_process = IdempotencyStore(db)
    impatient = IdempotencyStore(db, wait_timeout=0.05, poll_interval=0.01)
    slow = asyncio.ensure_future(first_process.run("org", "slow", "h", Counter(delay=0.5)))
    await asyncio.sleep(0.1)
    with pytest.raises(IdempotencyInProgress):
        await impatient.run("org", "slow", "h", Counter())
    await slow


async def test_reusing_a_key_with_another_body_is_refused(db: Database) -> None:
    store = IdempotencyStore(db)
    await store.run("org", "k", request_fingerprint({"a": 1}), Counter())
    with pytest.raises(IdempotencyConflict):
        await store.run("org", "k", request_fingerprint({"a": 2}), Counter())


async def test_a_failed_first_attempt_frees_the_key(db: Database) -> None:
    store = IdempotencyStore(db)
    with pytest.raises(RuntimeError):
        await store.run("org", "retry-me", "h", Counter(fail=True))
    call = Counter()
    result, replayed = await store.run("org", "retry-me", "h", call)
    assert (result, replayed, call.calls) == ({"answer": 1}, False, 1)


async def test_a_stale_claim_is_taken_over(db: Database) -> None:
    store = IdempotencyStore(db, stale_after=timedelta(seconds=0))
    await store._claim("org", "orphan", "h")  # a process claimed it, then died
    call = Counter()
    result, replayed = await store.run("org", "orphan", "h", call)
    assert (result, replayed, call.calls) == ({"answer": 1}, False, 1)


def test_fingerprint_ignores_key_order() -> None:
    assert request_fingerprint({"a": 1, "b": 2}) == request_fingerprint({"b": 2, "a": 1})
