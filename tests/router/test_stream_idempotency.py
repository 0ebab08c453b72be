"""Idempotency-Key for streamed answers: stored when the stream ends, replayed (as a stream or
as JSON) without calling or billing again; released when nothing was streamed; kept as a billed
``incomplete`` outcome when the stream was cut off after it started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import select

from arkyra.db.models import AIIdempotency, AIUsage
from arkyra.db.session import Database
from arkyra.errors import Transient
from arkyra.providers.ai._base import ChatMessage, CompletionRequest, StreamChunk
from arkyra.router.breaker import CircuitBreaker
from arkyra.router.chain import ChainConfig
from arkyra.router.idempotency import (
    IdempotencyConflict,
    IdempotencyIncomplete,
    IdempotencyInProgress,
    IdempotencyStore,
)
from arkyra.router.service import ReplayedStream, RoutedStream, Router
from arkyra.router.usage import UsageWriter
from tests.conftest import make_settings
from tests.router import FakeAI, MidStream, creds, fake_prices

PRICES = fake_prices({"fa": ("1", "2"), "fb": ("1", "2")})


class GatedAI(FakeAI):
    """A fake whose stream waits for ``gate`` before its first chunk (a request in flight)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.called = asyncio.Event()

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        started = False
        async for chunk in super().stream_completion(credentials, request):
            if not started:
                started = True
                self.called.set()
                await self.gate.wait()
            yield chunk


class EmptyThenFail(FakeAI):
    """A stream that starts with an empty (role-only) chunk, then fails: no content at all."""

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        if not self.script:
            async for chunk in super().stream_completion(credentials, request):
                yield chunk
            return
        self.script.popleft()
        self.calls.append((dict(credentials), request))
        yield StreamChunk(delta="")
        raise Transient("cut before any content", provider=self.identifier)


def ask(text: str = "hello", **kwargs: object) -> CompletionRequest:
    return CompletionRequest(messages=[ChatMessage(role="user", content=text)], **kwargs)


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path)


def build(settings, db: Database, first: FakeAI | None = None, **scripts: list) -> Router:
    providers = {
        "fa": first or FakeAI("fa", settings=settings, script=scripts.get("fa", [])),
        "fb": FakeAI("fb", settings=settings, script=scripts.get("fb", [])),
    }
    return Router(
        settings,
        db=db,
        providers=providers,
        chain=ChainConfig(default=("fa", "fb")),
        prices=PRICES,
        breaker=CircuitBreaker(),
        usage=UsageWriter(db, flush_interval=0.01),
    )


def calls(router: Router) -> int:
    return sum(len(p.calls) for p in router.providers().values())  # type: ignore[attr-defined]


async def usage_rows(router: Router, db: Database) -> list[AIUsage]:
    await router.drain()
    async with db.sessions() as session:
        return list((await session.execute(select(AIUsage).order_by(AIUsage.id))).scalars())


async def text_of(stream: RoutedStream | ReplayedStream) -> str:
    return "".join([chunk.delta async for chunk in stream])


async def test_a_stream_is_stored_and_replayed_without_calling_again(
    settings, db: Database
) -> None:
    router = build(settings, db)
    first = await router.stream("org", ask(), idempotency_key="s-1", credentials_for=creds)
    assert isinstance(first, RoutedStream)
    assert await text_of(first) == "answer from fa"
    assert calls(router) == 1

    again = await router.stream("org", ask(), idempotency_key="s-1", credentials_for=creds)
    assert isinstance(again, ReplayedStream)
    assert again.route.replayed
    assert again.route.provider == "fa"
    assert again.route.cost == first.route.cost
    chunks = [chunk async for chunk in again]
    assert "".join(c.delta for c in chunks) == "answer from fa"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 170

    as_json, route = await router.complete(
        "org", ask(), idempotency_key="s-1", credentials_for=creds
    )
    assert (as_json.content, as_json.finish_reason, route.replayed) == (
        "answer from fa",
        "stop",
        True,
    )
    assert as_json.usage.total_tokens == 170
    assert calls(router) == 1
    assert [(r.provider, r.success) for r in await usage_rows(router, db)] == [("fa", True)]
    await router.aclose()


async def test_a_stored_plain_answer_replays_to_a_stream(settings, db: Database) -> None:
    router = build(settings, db)
    plain, _ = await router.complete("org", ask(), idempotency_key="p-1", credentials_for=creds)
    again = await router.stream("org", ask(), idempotency_key="p-1", credentials_for=creds)
    assert isinstance(again, ReplayedStream)
    assert await text_of(again) == plain.content
    assert calls(router) == 1
    assert len(await usage_rows(router, db)) == 1
    await router.aclose()


async def test_a_duplicate_while_the_stream_runs_is_refused_at_once(settings, db: Database) -> None:
    gated = GatedAI("fa", settings=settings)
    router = build(settings, db, first=gated)
    other_process = build(settings, db)
    first = asyncio.ensure_future(
        router.stream("org", ask(), idempotency_key="busy", credentials_for=creds)
    )
    await gated.called.wait()  # the key is claimed before the provider is called
    with pytest.raises(IdempotencyInProgress):
        await router.stream("org", ask(), idempotency_key="busy", credentials_for=creds)
    with pytest.raises(IdempotencyInProgress):
        await other_process.stream("org", ask(), idempotency_key="busy", credentials_for=creds)
    with pytest.raises(IdempotencyConflict):  # a different body is refused, in flight or not
        await router.stream("org", ask("other"), idempotency_key="busy", credentials_for=creds)
    gated.gate.set()
    assert await text_of(await first) == "answer from fa"
    assert calls(router) + calls(other_process) == 1
    await router.aclose()
    await other_process.aclose()


async def test_a_plain_duplicate_in_process_waits_for_the_stream(settings, db: Database) -> None:
    gated = GatedAI("fa", settings=settings)
    router = build(settings, db, first=gated)
    first = asyncio.ensure_future(
        router.stream("org", ask(), idempotency_key="wait", credentials_for=creds)
    )
    await gated.called.wait()
    waiter = asyncio.ensure_future(
        router.complete("org", ask(), idempotency_key="wait", credentials_for=creds)
    )
    gated.gate.set()
    assert await text_of(await first) == "answer from fa"
    completion, route = await waiter
    assert (completion.content, route.replayed) == ("answer from fa", True)
    assert len(gated.calls) == 1
    await router.aclose()


async def test_a_different_body_with_a_stored_key_is_refused(settings, db: Database) -> None:
    router = build(settings, db)
    await text_of(await router.stream("org", ask(), idempotency_key="k", credentials_for=creds))
    with pytest.raises(IdempotencyConflict):
        await router.stream("org", ask("other"), idempotency_key="k", credentials_for=creds)
    assert calls(router) == 1
    await router.aclose()


async def test_a_failure_before_the_first_chunk_releases_the_key(settings, db: Database) -> None:
    router = build(settings, db, fa=[Transient("a down")], fb=[Transient("b down")])
    with pytest.raises(Exception, match="every AI provider failed"):
        await router.stream("org", ask(), idempotency_key="r-1", credentials_for=creds)
    async with db.sessions() as session:
        assert (await session.execute(select(AIIdempotency))).first() is None
    retry = await router.stream("org", ask(), idempotency_key="r-1", credentials_for=creds)
    assert isinstance(retry, RoutedStream)
    assert await text_of(retry) == "answer from fa"
    rows = await usage_rows(router, db)
    assert [r.success for r in rows] == [False, False, True]  # billed once, for the answer
    await router.aclose()


async def test_a_stream_cut_before_any_content_releases_the_key(settings, db: Database) -> None:
    router = build(settings, db, first=EmptyThenFail("fa", settings=settings, script=["cut"]))
    stream = await router.stream("org", ask(), idempotency_key="r-2", credentials_for=creds)
    with pytest.raises(Transient):
        await text_of(stream)
    await router.drain()
    retry = await router.stream("org", ask(), idempotency_key="r-2", credentials_for=creds)
    assert isinstance(retry, RoutedStream)
    assert await text_of(retry) == "answer from fa"
    await router.aclose()


async def test_an_upstream_cut_after_content_is_kept_as_billed_and_incomplete(
    settings, db: Database
) -> None:
    router = build(settings, db, fa=[MidStream(Transient("cut"), chunks=2)])
    stream = await router.stream("org", ask(), idempotency_key="cut", credentials_for=creds)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.delta)

    with pytest.raises(Transient):
        await consume()
    await router.drain()
    for again in (
        router.stream("org", ask(), idempotency_key="cut", credentials_for=creds),
        router.complete("org", ask(), idempotency_key="cut", credentials_for=creds),
    ):
        with pytest.raises(IdempotencyIncomplete) as refused:
            await again
        outcome = refused.value.outcome
        assert outcome["completion"]["content"] == "".join(received) == "part0 part1 "
        assert outcome["incomplete"]["reason"] == "upstream_error"
    assert calls(router) == 1
    rows = await usage_rows(router, db)
    assert [(r.success, r.error_class) for r in rows] == [(False, "Transient")]
    assert rows[0].output_tokens > 0  # the tokens it produced are billed, once
    await router.aclose()


async def test_a_client_gone_after_content_is_kept_as_billed_and_incomplete(
    settings, db: Database
) -> None:
    router = build(settings, db)
    stream = await router.stream("org", ask(), idempotency_key="gone", credentials_for=creds)
    chunks = aiter(stream)
    assert (await anext(chunks)).delta == "answer "
    await stream.aclose()  # what the SSE response does when the client disconnects
    await router.drain()
    with pytest.raises(IdempotencyIncomplete) as refused:
        await router.stream("org", ask(), idempotency_key="gone", credentials_for=creds)
    assert refused.value.outcome["incomplete"]["reason"] == "client_disconnected"
    assert refused.value.outcome["completion"]["content"] == "answer "
    assert calls(router) == 1
    rows = await usage_rows(router, db)
    assert len(rows) == 1
    assert rows[0].output_tokens > 0  # estimated from the characters it produced
    assert rows[0].metadata_json["cancelled"] is True
    await router.aclose()


async def test_without_a_key_nothing_is_written(settings, db: Database) -> None:
    router = build(settings, db)
    await text_of(await router.stream("org", ask(), credentials_for=creds))
    async with db.sessions() as session:
        assert (await session.execute(select(AIIdempotency))).first() is None
    await router.aclose()


async def test_store_begin_without_waiting_refuses_a_pending_claim(db: Database) -> None:
    first = IdempotencyStore(db)
    second = IdempotencyStore(db)
    _, claim = await first.begin("org", "k", "h", wait=False)
    assert claim is not None
    with pytest.raises(IdempotencyInProgress):
        await second.begin("org", "k", "h", wait=False)
    await first.complete(claim, {"answer": 1})
    assert await second.begin("org", "k", "h", wait=False) == ({"answer": 1}, None)
