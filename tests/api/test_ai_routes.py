"""The AI routes: /ai/completion, /ai/providers, /ai/quota, /ai/usage and the OpenAI-compatible
/v1/chat/completions (JSON and SSE), with fake providers and with the sandboxed vendors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from sqlalchemy import select

from arkyra.api.app import create_app
from arkyra.api.cache import MemoryFunctionCache
from arkyra.config import Settings
from arkyra.db.models import AIUsage
from arkyra.db.session import Database
from arkyra.errors import InvalidCredentials, Transient
from arkyra.providers.ai._base import CompletionRequest, StreamChunk
from arkyra.ratelimit import RateLimiter
from arkyra.router.breaker import CircuitBreaker
from arkyra.router.chain import ChainConfig
from arkyra.router.service import Router
from arkyra.router.usage import UsageWriter
from arkyra.security.tokens import mint_token
from tests.conftest import make_settings
from tests.router import FakeAI, MidStream, fake_prices

API = "http://api.test"
PRICES = fake_prices({"fa": ("1", "2"), "fb": ("1", "2")})


@pytest.fixture
def ai_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        openai_api_key="sk-platform-openai",
        glm_api_key="platform-glm-key",
    )


def headers(settings: Settings, org: str = "org-a", role: str = "admin") -> dict[str, str]:
    token = mint_token(settings, organization_id=org, role=role)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client_for(
    ai_settings: Settings, db: Database, sandbox_client: httpx.AsyncClient
) -> AsyncIterator[Callable[..., object]]:
    """``await client_for(router_factory)``: the API with the given AI router installed."""
    managers: list[LifespanManager] = []
    clients: list[httpx.AsyncClient] = []

    async def make(build: Callable[[FastAPI], Router] | None = None) -> httpx.AsyncClient:
        app = create_app(
            ai_settings,
            database=db,
            limiter=RateLimiter(MemoryStorage()),
            cache=MemoryFunctionCache(),
            http_client=sandbox_client,
        )
        manager = LifespanManager(app)
        await manager.__aenter__()
        managers.append(manager)
        if build is not None:
            app.state.ai_router = build(app)
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url=API)
        clients.append(client)
        client.app = app  # type: ignore[attr-defined]
        return client

    yield make
    for client in clients:
        router = getattr(client.app.state, "ai_router", None)  # type: ignore[attr-defined]
        if router is not None:
            await router.aclose()
        await client.aclose()
    for manager in managers:
        await manager.__aexit__(None, None, None)


def fake_router(settings: Settings, db: Database, **scripts: list) -> Callable[[FastAPI], Router]:
    def build(_: FastAPI) -> Router:
        providers = {
            name: FakeAI(name, settings=settings, script=scripts.get(name, []))
            for name in ("fa", "fb")
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

    return build


def org_keys(identifier: str) -> dict[str, str]:
    return {"api_key": f"k-{identifier}"}


async def _with_keys(client: httpx.AsyncClient) -> None:
    """Pretend org-a connected its own keys for the fakes (the credential cache is primed)."""
    from arkyra.api.routes.ai import organization_keys

    class _Req:
        app = client.app  # type: ignore[attr-defined]

    keys = organization_keys(_Req())  # type: ignore[arg-type]
    import time

    for org in ("org-a", "org-b"):
        keys._cache[org] = (time.monotonic() + 3600, {"fa": org_keys("fa"), "fb": org_keys("fb")})


MESSAGES = [{"role": "user", "content": "hello"}]


async def test_completion_answers_with_route_and_overhead_header(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[Transient("down", status=503)]))
    await _with_keys(api)
    response = await api.post(
        "/ai/completion", json={"messages": MESSAGES}, headers=headers(ai_settings)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["completion"]["content"] == "answer from fb"
    assert [a["outcome"] for a in body["route"]["attempts"]] == ["Transient", "ok"]
    assert float(response.headers["x-arkyra-overhead-ms"]) >= 0
    assert response.headers["x-arkyra-provider"] == "fb"


async def test_completion_requires_a_token(client_for, ai_settings: Settings, db: Database) -> None:
    api = await client_for(fake_router(ai_settings, db))
    response = await api.post("/ai/completion", json={"messages": MESSAGES})
    assert response.status_code == 401


async def test_all_failing_is_502_listing_attempts(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(
        fake_router(ai_settings, db, fa=[Transient("a down")], fb=[InvalidCredentials("b key")])
    )
    await _with_keys(api)
    response = await api.post(
        "/ai/completion", json={"messages": MESSAGES}, headers=headers(ai_settings)
    )
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "all_providers_failed"
    assert [(a["provider"], a["outcome"]) for a in body["attempts"]] == [
        ("fa", "Transient"),
        ("fb", "InvalidCredentials"),
    ]


async def test_quota_exhaustion_is_429_naming_budget_and_reset(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = headers(ai_settings)
    set_quota = await api.put("/ai/quota/org-a", json={"limit_tokens": 10}, headers=auth)
    assert set_quota.status_code == 200, set_quota.text
    response = await api.post("/ai/completion", json={"messages": MESSAGES}, headers=auth)
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert body["budget"] == "tokens"
    assert body["resets_at"]
    assert int(response.headers["Retry-After"]) > 0
    assert "resets at" in body["message"]


async def test_quota_and_usage_of_own_org_only(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = headers(ai_settings)
    await api.put("/ai/quota/org-a", json={"limit_usd": "5"}, headers=auth)
    for task in ("summary", "completion"):
        ok = await api.post(
            "/ai/completion", json={"messages": MESSAGES, "task_type": task}, headers=auth
        )
        assert ok.status_code == 200
    await api.app.state.ai_router.drain()  # type: ignore[attr-defined]

    quota = (await api.get("/ai/quota/org-a", headers=auth)).json()
    assert quota["usd"]["limit"] == "5.000000000"
    assert Decimal(quota["usd"]["spent"]) > 0
    assert quota["tokens"]["spent"] == 340

    usage = (await api.get("/ai/usage/org-a", headers=auth)).json()
    assert usage["by_provider"][0]["key"] == "fa"
    assert usage["by_provider"][0]["attempts"] == 2
    assert {r["key"] for r in usage["by_task_type"]} == {"summary", "completion"}
    assert usage["by_day"][0]["attempts"] == 2

    assert (await api.get("/ai/quota/org-b", headers=auth)).status_code == 404
    assert (await api.get("/ai/usage/org-b", headers=auth)).status_code == 404
    member = headers(ai_settings, role="member")
    assert (await api.put("/ai/quota/org-a", json={}, headers=member)).status_code == 403


async def test_providers_lists_breaker_state_and_metrics(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = headers(ai_settings)
    await api.post("/ai/completion", json={"messages": MESSAGES}, headers=auth)
    body = (await api.get("/ai/providers?probe=true", headers=auth)).json()
    entries = {p["provider"]: p for p in body["providers"]}
    assert entries["fa"]["breaker"]["state"] == "closed"
    assert entries["fa"]["metrics"]["requests"] >= 1
    assert entries["fa"]["healthy"] is True


async def test_idempotency_key_replays_without_a_second_call(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "order-42"}
    first = await api.post("/ai/completion", json={"messages": MESSAGES}, headers=auth)
    second = await api.post("/ai/completion", json={"messages": MESSAGES}, headers=auth)
    assert first.status_code == second.status_code == 200
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.json()["completion"] == second.json()["completion"]
    fake = api.app.state.ai_router._providers["fa"]  # type: ignore[attr-defined]
    assert len(fake.calls) == 1
    other_body = await api.post(
        "/ai/completion", json={"messages": [{"role": "user", "content": "x"}]}, headers=auth
    )
    assert other_body.status_code == 422


async def test_openai_compatible_json(client_for, ai_settings: Settings, db: Database) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    response = await api.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": MESSAGES, "max_tokens": 50},
        headers=headers(ai_settings),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "answer from fa",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    # OpenAI semantics again: prompt_tokens includes the cached ones
    assert body["usage"]["prompt_tokens"] == 120
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 20
    assert body["usage"]["total_tokens"] == 170
    assert "x-arkyra-overhead-ms" in response.headers


def _events(text: str) -> list:
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


async def test_openai_compatible_stream_fails_over_before_the_first_token(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[Transient("down")]))
    await _with_keys(api)
    response = await api.post(
        "/v1/chat/completions",
        json={"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        headers=headers(ai_settings),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-arkyra-provider"] == "fb"
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "answer from fb"
    assert chunks[-1]["usage"]["total_tokens"] == 170


async def test_openai_compatible_stream_error_after_first_token_is_an_event(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[MidStream(Transient("cut"))]))
    await _with_keys(api)
    response = await api.post(
        "/v1/chat/completions",
        json={"messages": MESSAGES, "stream": True},
        headers=headers(ai_settings),
    )
    events = _events(response.text)
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "part0 "
    assert json.loads(events[-1])["error"]["type"] == "Transient"
    fb = api.app.state.ai_router._providers["fb"]  # type: ignore[attr-defined]
    assert fb.calls == []  # no failover after the first token


async def test_openai_compatible_stream_all_failing_is_a_json_error(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[Transient("a")], fb=[Transient("b")]))
    await _with_keys(api)
    response = await api.post(
        "/v1/chat/completions",
        json={"messages": MESSAGES, "stream": True},
        headers=headers(ai_settings),
    )
    assert response.status_code == 502
    assert response.json()["error"] == "all_providers_failed"


async def test_end_to_end_against_the_sandboxed_vendors(
    client_for, ai_settings: Settings, sandbox_state, sandbox_client: httpx.AsyncClient
) -> None:
    """The real GLM and OpenAI providers with platform keys: GLM rejects the key, OpenAI answers."""
    sandbox_state.faults_for("glm").update({"error_rate": 1.0, "error_status": 401})
    api = await client_for()
    app_router = Router(
        ai_settings,
        db=api.app.state.db,  # type: ignore[attr-defined]
        client=sandbox_client,
        chain=ChainConfig(default=("glm", "openai")),
        breaker=CircuitBreaker(),
    )
    api.app.state.ai_router = app_router  # type: ignore[attr-defined]
    response = await api.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20},
        headers=headers(ai_settings),
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-arkyra-provider"] == "openai"
    body = response.json()
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0


async def official_client(
    client_for, ai_settings: Settings, sandbox_client: httpx.AsyncClient
) -> tuple[Any, Any]:
    """The API client and openai.AsyncOpenAI on its ASGI transport, routed to the sandboxed
    OpenAI only."""
    openai = pytest.importorskip("openai")
    api = await client_for()
    api.app.state.ai_router = Router(  # type: ignore[attr-defined]
        ai_settings,
        db=api.app.state.db,  # type: ignore[attr-defined]
        client=sandbox_client,
        chain=ChainConfig(default=("openai",)),
        breaker=CircuitBreaker(),
    )
    token = headers(ai_settings)["Authorization"].split(" ", 1)[1]
    return api, openai.AsyncOpenAI(
        api_key=token,
        base_url=f"{API}/v1",
        http_client=httpx.AsyncClient(transport=api._transport, base_url=API),
        max_retries=0,
    )


async def test_the_official_openai_client_through_the_door(
    client_for, ai_settings: Settings, sandbox_client: httpx.AsyncClient
) -> None:
    """openai.AsyncOpenAI against /v1/chat/completions: plain, JSON mode, and streamed, served
    by the real OpenAI provider behind the router (the sandboxed vendor upstream)."""
    _, client = await official_client(client_for, ai_settings, sandbox_client)
    messages = [{"role": "user", "content": "Say hello"}]

    plain = await client.chat.completions.create(model="gpt-6-luna", messages=messages)
    assert plain.choices[0].message.content
    assert plain.usage is not None
    assert plain.usage.completion_tokens > 0

    as_json = await client.chat.completions.create(
        model="gpt-6-luna",
        messages=[{"role": "user", "content": "Give me a JSON object with a greeting"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(as_json.choices[0].message.content or ""), dict)

    stream = await client.chat.completions.create(
        model="gpt-6-luna",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces)
    assert usage is not None
    assert usage.completion_tokens > 0
    await client.close()


# -- Idempotency-Key on streams -----------------------------------------------------------------


class GatedAI(FakeAI):
    """A fake whose stream holds its first chunk until ``gate`` is set (a request in flight)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.called = asyncio.Event()

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        first = True
        async for chunk in super().stream_completion(credentials, request):
            if first:
                first = False
                self.called.set()
                await self.gate.wait()
            yield chunk


STREAM = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}


def _chunks(response: httpx.Response) -> list[dict]:
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def _content(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def _usage_rows(api: httpx.AsyncClient, db: Database) -> list[AIUsage]:
    await api.app.state.ai_router.drain()  # type: ignore[attr-defined]
    async with db.sessions() as session:
        return list((await session.execute(select(AIUsage))).scalars())


async def test_openai_compatible_stream_replays_a_repeated_key(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "stream-1"}
    first = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert again.status_code == 200, again.text
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-arkyra-provider"] == "fa"
    chunks = _chunks(again)
    assert _content(chunks) == _content(_chunks(first)) == "answer from fa"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["id"] == _chunks(first)[0]["id"]  # the same completion, replayed
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 170

    plain = await api.post(
        "/v1/chat/completions", json={"messages": MESSAGES, "stream": False}, headers=auth
    )
    assert plain.status_code == 200, plain.text
    assert plain.headers["idempotent-replayed"] == "true"
    assert plain.json()["choices"][0]["message"]["content"] == "answer from fa"
    assert plain.json()["usage"]["total_tokens"] == 170
    fake = api.app.state.ai_router._providers["fa"]  # type: ignore[attr-defined]
    assert len(fake.calls) == 1
    assert len(await _usage_rows(api, db)) == 1


async def test_openai_compatible_stream_replays_a_plain_answer(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "plain-first"}
    plain = await api.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=auth)
    assert plain.status_code == 200, plain.text
    streamed = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert streamed.headers["idempotent-replayed"] == "true"
    assert _content(_chunks(streamed)) == plain.json()["choices"][0]["message"]["content"]
    fake = api.app.state.ai_router._providers["fa"]  # type: ignore[attr-defined]
    assert len(fake.calls) == 1


async def test_openai_compatible_stream_duplicate_in_flight_is_409(
    client_for, ai_settings: Settings, db: Database
) -> None:
    gated = GatedAI("fa", settings=ai_settings)

    def build(app: FastAPI) -> Router:
        router = fake_router(ai_settings, db)(app)
        router._providers["fa"] = gated
        return router

    api = await client_for(build)
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "busy"}
    first = asyncio.ensure_future(api.post("/v1/chat/completions", json=STREAM, headers=auth))
    await gated.called.wait()
    duplicate = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "idempotency_in_progress"
    assert duplicate.headers["Retry-After"] == "1"
    other = await api.post(
        "/v1/chat/completions",
        json={**STREAM, "messages": [{"role": "user", "content": "x"}]},
        headers=auth,
    )
    assert other.status_code == 422
    assert "different request" in other.json()["message"]
    gated.gate.set()
    response = await first
    assert response.status_code == 200
    assert _content(_chunks(response)) == "answer from fa"
    assert len(gated.calls) == 1


async def test_openai_compatible_stream_failing_before_a_token_frees_the_key(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[Transient("a")], fb=[Transient("b")]))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "retry-me"}
    failed = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert failed.status_code == 502
    retry = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert retry.status_code == 200
    assert "idempotent-replayed" not in retry.headers
    assert _content(_chunks(retry)) == "answer from fa"
    rows = await _usage_rows(api, db)
    assert sorted(r.success for r in rows) == [False, False, True]  # one answer billed


async def test_openai_compatible_stream_cut_after_tokens_is_not_billed_twice(
    client_for, ai_settings: Settings, db: Database
) -> None:
    api = await client_for(fake_router(ai_settings, db, fa=[MidStream(Transient("cut"))]))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "cut-off"}
    cut = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert json.loads(_events(cut.text)[-1])["error"]["type"] == "Transient"
    await api.app.state.ai_router.drain()  # type: ignore[attr-defined]
    for body in (STREAM, {"messages": MESSAGES}):
        retry = await api.post("/v1/chat/completions", json=body, headers=auth)
        assert retry.status_code == 422
        refused = retry.json()
        assert refused["error"] == "idempotency_incomplete"
        assert refused["reason"] == "upstream_error"
        assert refused["partial"]["content"] == "part0 "
        assert "new Idempotency-Key" in refused["message"]
    fake = api.app.state.ai_router._providers["fa"]  # type: ignore[attr-defined]
    assert len(fake.calls) == 1
    rows = await _usage_rows(api, db)
    assert [(r.success, r.output_tokens > 0) for r in rows] == [(False, True)]


async def test_the_official_openai_client_stream_with_an_idempotency_key(
    client_for,
    ai_settings: Settings,
    db: Database,
    sandbox_state,
    sandbox_client: httpx.AsyncClient,
) -> None:
    """openai.AsyncOpenAI streams twice with the same Idempotency-Key: the vendor (sandbox) is
    called and billed once, and the replayed stream parses to the same answer and usage."""
    api, client = await official_client(client_for, ai_settings, sandbox_client)
    request: dict[str, Any] = {
        "model": "gpt-6-luna",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream_options": {"include_usage": True},
        "extra_headers": {"Idempotency-Key": "client-stream-1"},
    }

    async def streamed() -> tuple[str, Any, Any]:
        raw = await client.chat.completions.with_raw_response.create(stream=True, **request)
        pieces: list[str] = []
        usage = finish = None
        async for chunk in raw.parse():
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        return "".join(pieces), (usage, finish), raw.headers.get("idempotent-replayed")

    first_text, (first_usage, first_finish), first_replayed = await streamed()
    again_text, (again_usage, again_finish), again_replayed = await streamed()
    assert first_text
    assert (again_text, again_finish) == (first_text, first_finish)
    assert again_usage is not None
    assert again_usage.completion_tokens == first_usage.completion_tokens > 0
    assert (first_replayed, again_replayed) == (None, "true")

    plain = await client.chat.completions.create(**request)
    assert plain.choices[0].message.content == first_text
    assert sandbox_state.paid_calls["openai"] == 1
    await client.close()
    rows = await _usage_rows(api, db)
    assert [(r.provider, r.success) for r in rows] == [("openai", True)]


async def test_a_client_gone_before_the_stream_body_frees_the_key(
    client_for, ai_settings: Settings, db: Database
) -> None:
    """The client disconnects before the first SSE byte could be sent: the stream is still
    ended (attempt recorded once), and as no content reached anyone the key is released."""
    api = await client_for(fake_router(ai_settings, db))
    await _with_keys(api)
    auth = {**headers(ai_settings), "Idempotency-Key": "left-early"}
    body = json.dumps(STREAM).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    stuck = asyncio.Event()  # never set: the response start cannot be sent

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await stuck.wait()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"api.test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in auth.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("api.test", 80),
    }
    await api._transport.app(scope, receive, send)  # type: ignore[attr-defined]
    rows = await _usage_rows(api, db)
    assert len(rows) == 1
    assert rows[0].metadata_json["cancelled"] is True
    retry = await api.post("/v1/chat/completions", json=STREAM, headers=auth)
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert _content(_chunks(retry)) == "answer from fa"
