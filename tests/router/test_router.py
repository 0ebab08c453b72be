"""The router's decisions: each error class's fallback, capability and breaker filtering,
credentials, budgets, usage rows per attempt, idempotent replay and stream failover."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from arkyra.db.models import AIUsage
from arkyra.db.session import Database
from arkyra.errors import (
    BadRequest,
    ContentRejected,
    ContextTooLong,
    InvalidCredentials,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers.ai._base import ChatMessage, CompletionRequest, Usage
from arkyra.router import metrics
from arkyra.router.breaker import BreakerPolicy, CircuitBreaker
from arkyra.router.chain import ChainConfig
from arkyra.router.quota import QuotaExceeded, QuotaService
from arkyra.router.service import AllProvidersFailed, Router, RouterPolicy
from arkyra.router.usage import UsageWriter
from tests.conftest import make_settings
from tests.router import FakeAI, MidStream, creds, fake_prices

CHAIN = ("fa", "fb", "fc")
PRICES = fake_prices({"fa": ("10", "10"), "fb": ("1", "1"), "fc": ("5", "5")})


def ask(text: str = "hello", **kwargs: object) -> CompletionRequest:
    return CompletionRequest(messages=[ChatMessage(role="user", content=text)], **kwargs)


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path)


def build(
    settings, fakes: dict[str, FakeAI], *, db: Database | None = None, chain=CHAIN, **kwargs
) -> Router:
    for identifier in fakes:
        metrics.reset(identifier)
    kwargs.setdefault("breaker", CircuitBreaker(BreakerPolicy(failure_threshold=2)))
    kwargs.setdefault("policy", RouterPolicy(rate_limit_max_wait=0.05))
    return Router(
        settings,
        db=db,
        providers=fakes,
        chain=ChainConfig(default=chain),
        prices=PRICES,
        **kwargs,
    )


def fakes(settings, **scripts) -> dict[str, FakeAI]:
    return {name: FakeAI(name, settings=settings, script=scripts.get(name, [])) for name in CHAIN}


# -- the happy path and what it reports --------------------------------------------------------


async def test_first_provider_answers_with_route_info(settings) -> None:
    providers = fakes(settings)
    router = build(settings, providers)
    completion, route = await router.complete("org", ask(), credentials_for=creds)
    assert completion.content == "answer from fa"
    assert route.provider == "fa"
    assert route.model == "fa-model"
    assert [a.outcome for a in route.attempts] == ["ok"]
    # usage 100 in + 20 cached + 50 out at 10 USD/1M (cache at input rate) = 0.00170
    assert route.cost == Decimal("0.001700000")
    assert route.price_version == "test-1"
    assert route.credential_source == "organization"
    assert 0 <= route.overhead_ms < 50
    assert providers["fa"].calls[0][0] == {"api_key": "org-key-fa"}
    assert len(providers["fb"].calls) == 0
    assert metrics.provider_metrics("fa")["requests"] == 1


async def test_platform_key_is_used_when_the_org_has_none(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, openai_api_key="sk-platform")
    provider = FakeAI("openai", settings=settings)
    router = Router(settings, providers={"openai": provider}, chain=ChainConfig(default=["openai"]))
    _, route = await router.complete("org", ask(), credentials_for=lambda _id: None)
    assert provider.calls[0][0] == {"api_key": "sk-platform"}
    assert route.credential_source == "platform"


async def test_a_provider_without_any_key_is_skipped(settings) -> None:
    providers = fakes(settings)
    router = build(settings, providers)
    _, route = await router.complete(
        "org", ask(), credentials_for=lambda i: creds(i) if i == "fb" else None
    )
    assert route.provider == "fb"
    assert [a.outcome for a in route.attempts] == ["skipped", "ok"]
    assert "no credentials" in (route.attempts[0].reason or "")


async def test_async_credentials_callback(settings) -> None:
    async def lookup(identifier: str) -> dict[str, str]:
        return creds(identifier)

    router = build(settings, fakes(settings))
    _, route = await router.complete("org", ask(), credentials_for=lookup)
    assert route.provider == "fa"


# -- fallback decisions by error class ------------------------------------------------------------


async def test_transient_moves_on(settings) -> None:
    providers = fakes(settings, fa=[Transient("503", provider="fa", status=503)])
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fb"
    assert [(a.provider, a.outcome) for a in route.attempts] == [("fa", "Transient"), ("fb", "ok")]


async def test_rate_limited_with_short_wait_retries_the_same_provider(settings) -> None:
    providers = fakes(settings, fa=[RateLimited("slow down", retry_after=0.01, provider="fa")])
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fa"
    assert [a.attempt_no for a in route.attempts] == [1, 2]
    assert len(providers["fb"].calls) == 0


async def test_rate_limited_with_long_wait_moves_on(settings) -> None:
    providers = fakes(settings, fa=[RateLimited("slow down", retry_after=30, provider="fa")])
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fb"
    assert route.overhead_ms < 1000


@pytest.mark.parametrize("error_class", [QuotaExhausted, InvalidCredentials])
async def test_exhausted_or_rejected_key_moves_on_and_cools_down(settings, error_class) -> None:
    providers = fakes(settings, fa=[error_class("no", provider="fa")])
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fb"
    _, again = await router.complete("org", ask(), credentials_for=creds)
    assert again.provider == "fb"
    assert again.attempts[0].outcome == "skipped"
    assert "cooling" in again.attempts[0].reason
    assert len(providers["fa"].calls) == 1
    # another organization's own key is not cooled down by this one's
    _, other = await router.complete("other-org", ask(), credentials_for=creds)
    assert other.provider == "fa"


async def test_exhausted_platform_key_trips_the_shared_breaker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, glm_api_key="platform-glm", openai_api_key="platform-oa")
    providers = {
        "glm": FakeAI("glm", settings=settings, script=[QuotaExhausted("1113", provider="glm")]),
        "openai": FakeAI("openai", settings=settings),
    }
    breaker = CircuitBreaker()
    router = Router(
        settings, providers=providers, chain=ChainConfig(default=["glm", "openai"]), breaker=breaker
    )
    _, route = await router.complete("org", ask())
    assert route.provider == "openai"
    assert (await breaker.state("glm"))["state"] == "open"


async def test_context_too_long_moves_to_a_larger_window(settings) -> None:
    providers = {
        "fa": FakeAI("fa", settings=settings, context_window=8_000,
                     script=[ContextTooLong("too long", provider="fa")]),
        "fb": FakeAI("fb", settings=settings, context_window=8_000),
        "fc": FakeAI("fc", settings=settings, context_window=200_000),
    }  # fmt: skip
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fc"
    assert route.attempts[1].outcome == "skipped"
    assert "context window" in route.attempts[1].reason
    assert len(providers["fb"].calls) == 0


@pytest.mark.parametrize("error_class", [BadRequest, ContentRejected])
async def test_our_mistakes_and_refusals_fail_fast(settings, error_class) -> None:
    providers = fakes(settings, fa=[error_class("no", provider="fa", status=400)])
    router = build(settings, providers)
    with pytest.raises(error_class):
        await router.complete("org", ask(), credentials_for=creds)
    assert len(providers["fb"].calls) == 0
    assert (await router.breaker.state("fa"))["state"] == "closed"


async def test_unexpected_exception_is_treated_as_transient(settings) -> None:
    providers = fakes(settings, fa=[KeyError("bug")])
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.provider == "fb"
    assert route.attempts[0].outcome == "Transient"


async def test_all_failing_lists_every_attempt_and_why(settings) -> None:
    providers = fakes(
        settings,
        fa=[Transient("upstream 503", provider="fa", status=503)],
        fb=[QuotaExhausted("balance empty", provider="fb", status=402)],
        fc=[RateLimited("busy", retry_after=60, provider="fc", status=429)],
    )
    router = build(settings, providers)
    with pytest.raises(AllProvidersFailed) as caught:
        await router.complete("org", ask(), credentials_for=creds)
    error = caught.value
    assert [(a.provider, a.outcome, a.status) for a in error.attempts] == [
        ("fa", "Transient", 503),
        ("fb", "QuotaExhausted", 402),
        ("fc", "RateLimited", 429),
    ]
    text = str(error)
    assert "upstream 503" in text
    assert "balance empty" in text
    assert "busy" in text
    assert error.to_dict()["attempts"][1]["provider"] == "fb"


# -- filtering: capabilities and breakers --------------------------------------------------------


async def test_capability_filter_skips_models_without_structured_output(settings) -> None:
    providers = fakes(settings)
    providers["fa"] = FakeAI("fa", settings=settings, capabilities=frozenset({"json"}))
    router = build(settings, providers)
    request = ask(json_schema={"type": "object"})
    _, route = await router.complete("org", request, credentials_for=creds)
    assert route.provider == "fb"
    assert "structured_output" in route.attempts[0].reason


async def test_open_breaker_is_skipped_then_half_open_probe_closes_it(settings) -> None:
    clock = [1000.0]
    breaker = CircuitBreaker(
        BreakerPolicy(failure_threshold=2, cooldown_seconds=5), clock=lambda: clock[0]
    )
    providers = fakes(settings, fa=[Transient("x"), Transient("y")])
    router = build(settings, providers, breaker=breaker)
    for _ in range(2):
        await router.complete("org", ask(), credentials_for=creds)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.attempts[0].reason == "circuit open"
    assert len(providers["fa"].calls) == 2
    clock[0] += 5
    _, probe = await router.complete("org", ask(), credentials_for=creds)
    assert probe.provider == "fa"  # the one probe went through and succeeded
    await router.drain()
    assert (await breaker.state("fa"))["state"] == "closed"


async def test_chain_per_task_type_and_pinned_models(settings) -> None:
    providers = fakes(settings)
    router = Router(
        settings,
        providers=providers,
        prices=PRICES,
        chain=ChainConfig(chains={"summary": ["fc:fc-large", "fa"]}, default=CHAIN),
    )
    _, route = await router.complete("org", ask(task_type="summary"), credentials_for=creds)
    assert (route.provider, route.model) == ("fc", "fc-large")
    assert providers["fc"].calls[0][1].model == "fc-large"
    _, default = await router.complete("org", ask(), credentials_for=creds)
    assert default.provider == "fa"


# -- budgets --------------------------------------------------------------------------------------


async def test_near_the_limit_cheaper_providers_go_first(settings, db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("0.10"))
    first = await quota.reserve("org", Decimal("0.095"), 0)  # 5% left: near the limit
    assert first
    router = build(settings, fakes(settings), db=db, quota=quota)
    _, route = await router.complete("org", ask(max_tokens=100), credentials_for=creds)
    assert route.provider == "fb"  # 1 USD/1M beats fa's 10 and fc's 5
    await router.aclose()


async def test_far_from_the_limit_the_chain_order_holds(settings, db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("100"))
    router = build(settings, fakes(settings), db=db, quota=quota)
    _, route = await router.complete("org", ask(max_tokens=100), credentials_for=creds)
    assert route.provider == "fa"
    await router.aclose()


async def test_a_call_whose_worst_case_exceeds_the_budget_never_starts(
    settings, db: Database
) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("0.001"))
    providers = fakes(settings)
    router = build(settings, providers, db=db, quota=quota)
    # worst case for fb alone: (~13 input + 4096 output) * 1/1M > 0.001? no: 0.0041 > 0.001 yes
    with pytest.raises(QuotaExceeded) as caught:
        await router.complete("org", ask(max_tokens=4_000), credentials_for=creds)
    assert caught.value.budget == "usd"
    assert all(len(p.calls) == 0 for p in providers.values())
    # a small request still fits the cheapest provider only
    _, route = await router.complete("org", ask(max_tokens=100), credentials_for=creds)
    assert route.provider == "fb"
    await router.aclose()


async def test_token_budget_refusal(settings, db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_tokens=50)
    router = build(settings, fakes(settings), db=db, quota=quota)
    with pytest.raises(QuotaExceeded) as caught:
        await router.complete("org", ask(max_tokens=100), credentials_for=creds)
    assert caught.value.budget == "tokens"
    await router.aclose()


async def test_reservation_is_settled_with_the_real_cost_and_released_on_failure(
    settings, db: Database
) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("10"))
    providers = fakes(settings, fa=[Transient("down")])
    router = build(settings, providers, db=db, quota=quota)
    _, route = await router.complete("org", ask(max_tokens=100), credentials_for=creds)
    await router.aclose()  # settles, flushes and gives the unused lease back
    snapshot = await quota.snapshot("org")
    assert Decimal(snapshot["usd"]["reserved"]) == 0
    assert Decimal(snapshot["usd"]["spent"]) == route.cost
    assert snapshot["tokens"]["spent"] == 170


# -- usage rows -----------------------------------------------------------------------------------


async def test_one_usage_row_per_attempt(settings, db: Database) -> None:
    providers = fakes(settings, fa=[Transient("down", status=503)])
    usage = UsageWriter(db, flush_interval=0.01)
    router = build(settings, providers, db=db, usage=usage)
    _, route = await router.complete("org", ask(task_type="summary"), request_id="req-1",
                                     credentials_for=creds)  # fmt: skip
    await router.drain()
    async with db.sessions() as session:
        rows = list((await session.execute(select(AIUsage).order_by(AIUsage.attempt_no))).scalars())
    assert [(r.request_id, r.attempt_no, r.provider, r.success, r.error_class) for r in rows] == [
        ("req-1", 1, "fa", False, "Transient"),
        ("req-1", 2, "fb", True, None),
    ]
    assert rows[1].cost_usd == route.cost
    assert rows[1].input_tokens == 100
    assert rows[1].cached_tokens == 20
    assert rows[1].total_tokens == 170
    assert rows[1].task_type == "summary"
    assert rows[1].price_version == "test-1"
    await router.aclose()


# -- idempotency ----------------------------------------------------------------------------------


async def test_idempotent_replay_does_not_call_or_bill_again(settings, db: Database) -> None:
    providers = fakes(settings)
    providers["fa"].delay = 0.05
    router = build(settings, providers, db=db)
    results = await asyncio.gather(
        *(
            router.complete("org", ask(), idempotency_key="abc", credentials_for=creds)
            for _ in range(5)
        )
    )
    assert len(providers["fa"].calls) == 1
    assert {c.content for c, _ in results} == {"answer from fa"}
    assert sum(1 for _, r in results if r.replayed) == 4
    _, later = await router.complete("org", ask(), idempotency_key="abc", credentials_for=creds)
    assert later.replayed
    assert later.cost == results[0][1].cost
    await router.drain()
    async with db.sessions() as session:
        rows = list((await session.execute(select(AIUsage))).scalars())
    assert len(rows) == 1
    await router.aclose()


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_fails_over_before_the_first_token(settings) -> None:
    providers = fakes(settings, fa=[Transient("down before streaming")])
    router = build(settings, providers)
    stream = await router.stream("org", ask(), credentials_for=creds)
    assert stream.provider == "fb"
    chunks = [c async for c in stream]
    assert "".join(c.delta for c in chunks) == "answer from fb"
    assert [a.outcome for a in stream.route.attempts] == ["Transient", "ok"]
    assert stream.route.cost > 0
    assert providers["fb"].calls[0][1].stream is True


async def test_stream_does_not_fail_over_after_the_first_token(settings) -> None:
    providers = fakes(settings, fa=[MidStream(Transient("cut"), chunks=2)])
    router = build(settings, providers)
    stream = await router.stream("org", ask(), credentials_for=creds)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.delta)

    with pytest.raises(Transient):
        await consume()
    assert received == ["part0 ", "part1 "]
    assert len(providers["fb"].calls) == 0
    assert stream.route.attempts[-1].outcome == "Transient"


async def test_stream_all_failing_raises_before_any_chunk(settings) -> None:
    providers = fakes(
        settings, fa=[Transient("a")], fb=[Transient("b")], fc=[BadRequest("c", status=400)]
    )
    router = build(settings, providers)
    with pytest.raises(BadRequest):
        await router.stream("org", ask(), credentials_for=creds)


async def test_stream_usage_row_and_settlement(settings, db: Database) -> None:
    quota = QuotaService(db)
    await quota.set_policy("org", limit_usd=Decimal("10"))
    router = build(settings, fakes(settings), db=db, quota=quota)
    stream = await router.stream("org", ask(max_tokens=100), request_id="s-1",
                                 credentials_for=creds)  # fmt: skip
    _ = [c async for c in stream]
    await router.drain()
    async with db.sessions() as session:
        rows = list((await session.execute(select(AIUsage))).scalars())
    assert [(r.request_id, r.success, r.total_tokens) for r in rows] == [("s-1", True, 170)]
    assert Decimal((await quota.snapshot("org"))["usd"]["spent"]) == stream.route.cost
    await router.aclose()


async def test_metrics_track_success_and_error_rates(settings) -> None:
    providers = fakes(settings, fa=[Transient("x")])
    router = build(settings, providers, breaker=CircuitBreaker())
    await router.complete("org", ask(), credentials_for=creds)
    await router.complete("org", ask(), credentials_for=creds)
    stats = metrics.provider_metrics("fa")
    assert stats["requests"] == 2
    assert stats["success_rate"] == 0.5
    assert stats["error_rate"] == 0.5
    assert stats["latency_p50_ms"] is not None
    assert stats["cost_usd"] > 0
    assert providers["fa"].get_metrics()["requests"] == 2


async def test_provider_usage_type_is_normalised(settings) -> None:
    """Cost comes from the normalised Usage the provider returned."""
    providers = fakes(settings)
    providers["fa"].usage = Usage(input_tokens=1_000_000, output_tokens=0)
    router = build(settings, providers)
    _, route = await router.complete("org", ask(), credentials_for=creds)
    assert route.cost == Decimal("10.000000000")


async def test_a_named_model_goes_first_to_the_provider_that_serves_it(settings) -> None:
    providers = fakes(settings)
    router = build(settings, providers)
    _, route = await router.complete("org", ask(model="fc-model"), credentials_for=creds)
    assert (route.provider, route.model) == ("fc", "fc-model")
    # a model nobody knows: the chain decides, each provider with its default model
    _, other = await router.complete("org", ask(model="gpt-4o-mini"), credentials_for=creds)
    assert (other.provider, other.model) == ("fa", "fa-model")


def test_the_same_plan_drives_a_prefect_task(settings) -> None:
    from arkyra.router.chain import plan, should_fall_back

    the_plan = plan(ask(), fakes(settings), config=ChainConfig(default=CHAIN), prices=PRICES)
    assert the_plan.prefect_retries == 2
    assert [the_plan.for_attempt(n).identifier for n in (1, 2, 3)] == ["fa", "fb", "fc"]
    with pytest.raises(IndexError):
        the_plan.for_attempt(4)
    assert should_fall_back(Transient("x"))
    assert should_fall_back(ContextTooLong("x"))
    assert not should_fall_back(BadRequest("x"))
    assert not should_fall_back(ContentRejected("x"))
    assert not should_fall_back(ValueError("x"))
