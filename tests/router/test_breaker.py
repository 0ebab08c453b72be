"""Circuit breakers: open on consecutive failures or a failure rate, one half-open probe,
close on its success; the same rules in memory and shared through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from arkyra.errors import BadRequest, ContentRejected, QuotaExhausted, RateLimited, Transient
from arkyra.router.breaker import Admission, BreakerPolicy, CircuitBreaker, counts_as_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


POLICY = BreakerPolicy(
    failure_threshold=3,
    window_seconds=60,
    min_samples=6,
    failure_rate=0.5,
    cooldown_seconds=10,
    probe_timeout_seconds=5,
)


@pytest.fixture(params=["memory", "redis"])
async def make_breaker(request: pytest.FixtureRequest) -> AsyncIterator:
    clock = Clock()
    made: list[CircuitBreaker] = []
    prefix = f"test-breaker-{uuid.uuid4().hex}"

    def make() -> CircuitBreaker:
        if request.param == "memory":
            breaker = CircuitBreaker(POLICY, clock=clock)
        else:
            import redis.asyncio as aioredis

            url = request.getfixturevalue("redis_url")
            client = aioredis.Redis.from_url(url, decode_responses=True)
            breaker = CircuitBreaker(POLICY, redis=client, prefix=prefix, clock=clock)
        made.append(breaker)
        return breaker

    make.clock = clock  # type: ignore[attr-defined]
    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for breaker in made:
        if breaker.redis is not None:
            await breaker.reset("p")
        await breaker.aclose()


async def test_opens_after_consecutive_failures(make_breaker) -> None:
    breaker = make_breaker()
    for _ in range(2):
        assert await breaker.allow("p") is Admission.ALLOWED
        await breaker.record("p", ok=False)
    assert (await breaker.state("p"))["state"] == "closed"
    await breaker.record("p", ok=False)
    assert (await breaker.state("p"))["state"] == "open"
    assert await breaker.allow("p") is Admission.REJECTED


async def test_a_success_resets_the_consecutive_count(make_breaker) -> None:
    breaker = make_breaker()
    for ok in (False, False, True, False, False):
        await breaker.record("p", ok=ok)
    assert (await breaker.state("p"))["state"] == "closed"


async def test_opens_on_failure_rate_over_minimum_sample(make_breaker) -> None:
    breaker = make_breaker()
    # alternating never hits 3 in a row, but 3 failures of 6 samples is 50%
    for ok in (True, False, True, False, True):
        await breaker.record("p", ok=ok)
    assert (await breaker.state("p"))["state"] == "closed"  # only 5 samples
    await breaker.record("p", ok=False)
    assert (await breaker.state("p"))["state"] == "open"


async def test_old_samples_leave_the_window(make_breaker) -> None:
    breaker = make_breaker()
    for ok in (False, True, False, True, False):
        await breaker.record("p", ok=ok)
    make_breaker.clock.now += 120  # those are outside the 60 s window now
    await breaker.record("p", ok=True)
    await breaker.record("p", ok=False)
    assert (await breaker.state("p"))["state"] == "closed"


async def test_half_open_lets_exactly_one_probe_then_closes(make_breaker) -> None:
    breaker = make_breaker()
    for _ in range(3):
        await breaker.record("p", ok=False)
    make_breaker.clock.now += 10
    assert (await breaker.state("p"))["state"] == "half_open"
    assert await breaker.allow("p") is Admission.PROBE
    assert await breaker.allow("p") is Admission.REJECTED  # only one probe at a time
    await breaker.record("p", ok=True)
    assert (await breaker.state("p"))["state"] == "closed"
    assert await breaker.allow("p") is Admission.ALLOWED


async def test_failed_probe_reopens_for_another_cooldown(make_breaker) -> None:
    breaker = make_breaker()
    for _ in range(3):
        await breaker.record("p", ok=False)
    make_breaker.clock.now += 10
    assert await breaker.allow("p") is Admission.PROBE
    await breaker.record("p", ok=False)
    state = await breaker.state("p")
    assert state["state"] == "open"
    assert state["retry_in_seconds"] == pytest.approx(10)
    assert await breaker.allow("p") is Admission.REJECTED


async def test_a_lost_probe_frees_its_slot_after_the_probe_timeout(make_breaker) -> None:
    breaker = make_breaker()
    await breaker.trip("p", 1)
    make_breaker.clock.now += 1
    assert await breaker.allow("p") is Admission.PROBE
    make_breaker.clock.now += 5
    assert await breaker.allow("p") is Admission.PROBE


async def test_trip_forces_open_for_a_while(make_breaker) -> None:
    breaker = make_breaker()
    await breaker.trip("p", 300)
    assert await breaker.allow("p") is Admission.REJECTED
    make_breaker.clock.now += 299
    assert await breaker.allow("p") is Admission.REJECTED
    make_breaker.clock.now += 1
    assert await breaker.allow("p") is Admission.PROBE


async def test_providers_are_independent(make_breaker) -> None:
    breaker = make_breaker()
    await breaker.trip("p", 300)
    assert await breaker.allow("q") is Admission.ALLOWED
    await breaker.reset("q")


async def test_state_is_shared_between_processes_through_redis(make_breaker) -> None:
    if make_breaker.kind != "redis":
        pytest.skip("sharing is a Redis feature")
    first, second = make_breaker(), make_breaker()
    for _ in range(3):
        await first.record("p", ok=False)
    assert await second.allow("p") is Admission.REJECTED
    make_breaker.clock.now += 10
    assert await second.allow("p") is Admission.PROBE
    assert await first.allow("p") is Admission.REJECTED  # the other process holds the probe
    await second.record("p", ok=True)
    assert await first.allow("p") is Admission.ALLOWED


def test_only_provider_health_errors_count() -> None:
    assert counts_as_failure(Transient("x"))
    assert counts_as_failure(RateLimited("x", retry_after=1))
    assert counts_as_failure(QuotaExhausted("x"))
    assert not counts_as_failure(BadRequest("x"))
    assert not counts_as_failure(ContentRejected("x"))


async def test_record_outcome_ignores_our_own_mistakes() -> None:
    breaker = CircuitBreaker(POLICY, clock=Clock())
    for _ in range(5):
        await breaker.record_outcome("p", BadRequest("bad"))
    assert (await breaker.state("p"))["state"] == "closed"
    for _ in range(3):
        await breaker.record_outcome("p", Transient("down"))
    assert (await breaker.state("p"))["state"] == "open"
