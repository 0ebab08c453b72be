"""OpenAI: request bodies per the reference, error mapping, SSE, golden usage, the sandbox, and
the official ``openai`` client against the emulator (to keep the emulator faithful)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import respx
from pydantic import SecretStr

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    ContentRejected,
    ContextTooLong,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import get_provider
from arkyra.providers.ai import Completion, CompletionRequest
from arkyra.providers.ai.openai import OpenAIProvider
from arkyra.sandbox.app import create_app
from arkyra.sandbox.state import SandboxState
from tests.providers.ai_fixtures import (
    INJECTED_FAULTS,
    MAGIC_WORDS,
    ChatRoute,
    ai_provider_fixtures,
    ask,
    assert_ai_catalogue_entry,
    assert_injected_fault_is_mapped,
    assert_sandbox_streams,
    collect,
    golden,
    raised_both_ways,
    sse,
)
from tests.providers.ai_fixtures import VIDEO_SCHEMA as SCHEMA
from tests.providers.ai_fixtures import assert_secret_free as assert_key_not_in_text

REAL = "https://api.openai.com/v1"
KEY = "sk-proj-test-8c1f2e9a7b3d4c5e"
CREDS = {"api_key": KEY, "label": "Marketing"}
CHAT = ChatRoute(f"{REAL}/chat/completions", CREDS)
CHAT_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-6-luna",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def assert_secret_free(exc: BaseException) -> None:
    """The key is in neither the text nor the API form (``to_dict``) of the error."""
    assert_key_not_in_text(exc, KEY)
    if isinstance(exc, ProviderError):
        assert KEY not in json.dumps(exc.to_dict())


settings, real, sandbox = ai_provider_fixtures("openai", OpenAIProvider)


# -- catalogue -------------------------------------------------------------------------------


def test_catalogue_entry() -> None:
    assert_ai_catalogue_entry(OpenAIProvider, "openai", REAL)
    assert set(OpenAIProvider.exposed) == {"generate_image"}
    assert {"gpt-6-sol", "gpt-6.1-terra", "gpt-6-luna"} <= set(OpenAIProvider.models)


def test_every_model_supports_structured_output_and_streaming() -> None:
    provider = OpenAIProvider
    for info in provider.models.values():
        assert {"json", "structured_output", "streaming"} <= info.capabilities


# -- credentials -----------------------------------------------------------------------------


def with_platform_key(settings: Settings, key: str) -> Settings:
    update = {"sandbox": False, "http_max_attempts": 1, "openai_api_key": SecretStr(key)}
    return settings.model_copy(update=update)


async def test_platform_key_is_used_when_the_organization_has_none(settings: Settings) -> None:
    platform = with_platform_key(settings, "sk-platform-000111")
    async with httpx.AsyncClient() as client:
        provider = get_provider("openai", settings=platform, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/models").respond(200, json={"object": "list", "data": []})
            await provider.check_connection({})
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-platform-000111"


async def test_the_organization_key_wins_over_the_platform_key(settings: Settings) -> None:
    platform = with_platform_key(settings, "sk-platform-000111")
    async with httpx.AsyncClient() as client:
        provider = get_provider("openai", settings=platform, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/models").respond(200, json={"object": "list", "data": []})
            await provider.check_connection(CREDS)
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


async def test_no_key_at_all_is_invalid_credentials_without_a_request(
    real: OpenAIProvider,
) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        route = mock.post("/chat/completions").respond(200, json=CHAT_OK)
        with pytest.raises(InvalidCredentials, match="no API key configured"):
            await real.generate_completion({}, ask())
    assert not route.called


# -- check_connection ------------------------------------------------------------------------


async def test_check_connection_lists_models_and_reads_the_organization(
    real: OpenAIProvider,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/models").respond(
            200,
            json={"object": "list", "data": [{"id": "gpt-6-luna", "object": "model"}]},
            headers={"openai-organization": "org-acme"},
        )
        account = await real.check_connection(CREDS)
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert (account.id, account.name) == ("org-acme", "Marketing")


async def test_check_connection_without_organization_uses_a_fingerprint(
    real: OpenAIProvider,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/models").respond(200, json={"object": "list", "data": []})
        account = await real.check_connection({"api_key": KEY})
    assert account.id == real.fingerprint(KEY)
    assert KEY not in account.id
    assert account.name == "OpenAI"


async def test_is_healthy_is_false_on_vendor_errors(real: OpenAIProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/models")
        route.respond(200, json={"object": "list", "data": []})
        assert await real.is_healthy(CREDS) is True
        route.respond(503, json=error_body("down", "server_error", None))
        assert await real.is_healthy(CREDS) is False
        route.respond(429, json=error_body("slow down", "requests", "rate_limit_exceeded"))
        assert await real.is_healthy(CREDS) is False
        route.respond(401, json=error_body("bad key", "invalid_request_error", "invalid_api_key"))
        assert await real.is_healthy(CREDS) is False


# -- request bodies --------------------------------------------------------------------------


async def sent_body(real: OpenAIProvider, request: CompletionRequest, answer: str = "Hi") -> dict:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["message"]["content"] = answer
    _, sent = await CHAT.complete(real, request, json=reply)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    return json.loads(sent.content)


async def test_plain_body(real: OpenAIProvider) -> None:
    body = await sent_body(real, ask(max_tokens=300))
    assert body == {
        "model": "gpt-6-luna",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_completion_tokens": 300,
    }


async def test_temperature_and_model_are_sent_when_set(real: OpenAIProvider) -> None:
    body = await sent_body(real, ask(model="gpt-6-sol", temperature=0.2))
    assert body["model"] == "gpt-6-sol"
    assert body["temperature"] == 0.2


async def test_json_mode_body_adds_the_word_json_only_when_missing(real: OpenAIProvider) -> None:
    body = await sent_body(real, ask(response_format="json"), answer='{"a": 1}')
    assert body == {
        "model": "gpt-6-luna",
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Answer with a single JSON object and nothing else."},
            {"role": "user", "content": "Say hi"},
        ],
        "max_completion_tokens": 1024,
    }
    body = await sent_body(real, ask("Reply in JSON", response_format="json"), answer="{}")
    assert body["messages"] == [{"role": "user", "content": "Reply in JSON"}]


async def test_structured_output_body(real: OpenAIProvider) -> None:
    request = ask(json_schema=SCHEMA, schema_name="video")
    body = await sent_body(real, request, answer='{"title": "x", "minutes": 2}')
    assert body == {
        "model": "gpt-6-luna",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "video", "schema": SCHEMA, "strict": True},
        },
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_completion_tokens": 1024,
    }


async def test_json_answer_is_parsed(real: OpenAIProvider) -> None:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["message"]["content"] = '{"title": "x", "minutes": 2}'
    completion, _ = await CHAT.complete(real, ask(json_schema=SCHEMA), json=reply)
    assert completion.parsed == {"title": "x", "minutes": 2}


async def test_invalid_json_answer_is_bad_request_that_names_max_tokens(
    real: OpenAIProvider,
) -> None:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0].update(finish_reason="length", message={"content": '{"title": "x'})
    with pytest.raises(BadRequest, match="max_tokens") as caught:
        await CHAT.complete(real, ask(response_format="json"), json=reply)
    assert caught.value.code == "invalid_json"


async def test_refusal_in_the_answer_is_content_rejected(real: OpenAIProvider) -> None:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "No."}
    with pytest.raises(ContentRejected, match="No"):
        await CHAT.complete(real, ask(), json=reply)


# -- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    pytest.param(
        429,
        error_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
        {},
        QuotaExhausted,
        id="insufficient_quota",
    ),
    pytest.param(
        429,
        error_body("Rate limit reached", "requests", "rate_limit_exceeded"),
        {"retry-after-ms": "1500", "retry-after": "9"},
        RateLimited,
        id="rate_limit_exceeded",
    ),
    pytest.param(
        400,
        error_body("too long", "invalid_request_error", "context_length_exceeded", "messages"),
        {},
        ContextTooLong,
        id="context_length_exceeded",
    ),
    pytest.param(
        401,
        error_body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
        {},
        InvalidCredentials,
        id="invalid_api_key",
    ),
    pytest.param(
        403,
        error_body("Country not supported", "request_forbidden", "unsupported_country"),
        {},
        InvalidCredentials,
        id="403",
    ),
    pytest.param(
        400,
        error_body("rejected", "invalid_request_error", "content_policy_violation"),
        {},
        ContentRejected,
        id="content_policy_violation",
    ),
    pytest.param(
        400,
        error_body("filtered", "invalid_request_error", "content_filter"),
        {},
        ContentRejected,
        id="content_filter",
    ),
    pytest.param(
        500, error_body("The server had an error", "server_error", None), {}, Transient, id="500"
    ),
    pytest.param(503, "upstream connect error", {}, Transient, id="503-text"),
    pytest.param(408, error_body("timeout", "timeout", None), {}, Transient, id="408"),
    pytest.param(409, error_body("conflict", "conflict", None), {}, Transient, id="409"),
    pytest.param(
        404,
        error_body("The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"),
        {},
        BadRequest,
        id="model_not_found",
    ),
]


@pytest.mark.parametrize(("status", "body", "headers", "error_class"), ERROR_CASES)
async def test_errors_are_mapped(
    real: OpenAIProvider, status: int, body: Any, headers: dict, error_class: type
) -> None:
    payload = {"text": body} if isinstance(body, str) else {"json": body}
    error = await CHAT.raised(real, ProviderError, status, headers=headers, **payload)
    assert type(error) is error_class
    assert error.status == status
    assert error.provider == "openai"
    assert_secret_free(error)


async def test_rate_limit_reads_retry_after_ms_first(real: OpenAIProvider) -> None:
    error = await CHAT.raised(
        real,
        RateLimited,
        429,
        json=error_body("slow down", "requests", "rate_limit_exceeded"),
        headers={"retry-after-ms": "1500", "retry-after": "9"},
    )
    assert error.retry_after == 1.5


async def test_quota_is_never_retried_but_a_rate_limit_is(settings: Settings) -> None:
    retrying = settings.model_copy(update={"sandbox": False, "http_max_attempts": 3})
    async with httpx.AsyncClient() as client:
        provider = get_provider("openai", settings=retrying, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.post("/chat/completions").respond(
                429, json=error_body("quota", "insufficient_quota", "insufficient_quota")
            )
            with pytest.raises(QuotaExhausted):
                await provider.generate_completion(CREDS, ask())
            assert route.call_count == 1
            route.respond(
                429,
                json=error_body("slow", "requests", "rate_limit_exceeded"),
                headers={"retry-after-ms": "1"},
            )
            with pytest.raises(RateLimited):
                await provider.generate_completion(CREDS, ask())
            assert route.call_count == 1 + 3
    assert QuotaExhausted.retry_same_provider is False


async def test_an_echoed_key_is_redacted_from_the_error(real: OpenAIProvider) -> None:
    body = error_body(f"Incorrect API key provided: {KEY}.", "invalid_request_error",
                      "invalid_api_key")  # fmt: skip
    error = await CHAT.raised(real, InvalidCredentials, 401, json=body)
    assert_secret_free(error)
    assert "[redacted]" in error.message


# -- streaming -------------------------------------------------------------------------------


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-6-luna",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


async def test_stream_body_and_chunks(real: OpenAIProvider) -> None:
    usage = {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33,
             "prompt_tokens_details": {"cached_tokens": 10}}  # fmt: skip
    stream = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="stop"),
        {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage},
        "[DONE]",
    )
    chunks, sent = await CHAT.streamed(
        real, text=stream, headers={"content-type": "text/event-stream"}
    )
    body = json.loads(sent.content)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "".join(c.delta for c in chunks) == "Hello"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.cached_tokens) == (20, 10)
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_error_status_raises_before_the_first_chunk(real: OpenAIProvider) -> None:
    body = error_body("quota", "insufficient_quota", "insufficient_quota")
    await CHAT.raised_before_first_chunk(real, QuotaExhausted, 429, json=body)


async def test_stream_error_event_mid_stream_is_mapped(real: OpenAIProvider) -> None:
    stream = sse(chunk("Hel"), {"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(Transient, match="overloaded"):
        await CHAT.streamed(real, text=stream)


async def test_a_broken_connection_is_transient(real: OpenAIProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/chat/completions").mock(side_effect=httpx.ReadError("reset"))
        with pytest.raises(Transient):
            await collect(real.stream_completion(CREDS, ask(stream=True)))


# -- golden responses ------------------------------------------------------------------------


async def test_golden_completion_normalises_cached_and_reasoning_tokens(
    real: OpenAIProvider,
) -> None:
    reply = golden("openai_chat_completion.json")
    completion, _ = await CHAT.complete(real, ask(response_format="json"), json=reply)
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (492, 1920, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (611, 512)
    assert usage.total_input_tokens == 2412
    assert completion.parsed["headline"] == "Three ways to cut render costs"
    assert completion.model == "gpt-6-sol-2026-09-22"
    assert completion.vendor_id == "chatcmpl-CX81fQ2mWq3tR9pLk0aZJ7yHnB4e"


async def test_golden_stream(real: OpenAIProvider) -> None:
    chunks, _ = await CHAT.streamed(real, text=sse(*golden("openai_chat_stream.json")["events"]))
    assert "".join(c.delta for c in chunks) == "Render once, reuse twice."
    final = chunks[-1]
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (57, 40)
    assert final.usage.reasoning_tokens == 32
    assert final.model == "gpt-6-luna-2026-09-22"


# -- images ----------------------------------------------------------------------------------


async def test_generate_image_body_and_result(real: OpenAIProvider) -> None:
    answer = {"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}], "usage": {"total_tokens": 9}}
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/images/generations").respond(200, json=answer)
        result = await real.call(
            "generate_image", CREDS, {"prompt": "a red fox", "response_format": "url"}
        )
    assert json.loads(route.calls.last.request.content) == {
        "prompt": "a red fox",
        "model": "gpt-image-1",
        "n": 1,
        "size": "1024x1024",
    }
    assert result["images"] == [{"b64_json": "iVBORw0KGgo="}]


async def test_generate_image_input_is_validated(real: OpenAIProvider) -> None:
    with pytest.raises(InvalidInput):
        await real.call("generate_image", CREDS, {"prompt": "x", "model": "midjourney"})
    with pytest.raises(InvalidInput):
        await real.call("generate_image", CREDS, {"prompt": "x", "unknown": 1})


# -- the sandbox, end to end -----------------------------------------------------------------


async def test_sandbox_check_connection_and_health(sandbox: OpenAIProvider) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id.startswith("org-")
    assert account.name == "Marketing"
    assert await sandbox.is_healthy(CREDS) is True
    assert await sandbox.is_healthy({"api_key": "invalid-key-123"}) is False
    with pytest.raises(InvalidCredentials) as caught:
        await sandbox.check_connection({"api_key": "invalid-key-123"})
    assert "invalid-key-123" not in str(caught.value)


async def test_sandbox_completion_counts_one_paid_call(
    sandbox: OpenAIProvider, sandbox_state: SandboxState
) -> None:
    completion = await sandbox.generate_completion(CREDS, ask("Hello there [cached]"))
    assert isinstance(completion, Completion)
    assert completion.content.startswith("Sandbox answer to: Hello there")
    assert completion.finish_reason == "stop"
    assert completion.usage.cached_tokens == 1024
    assert completion.usage.input_tokens > 0
    assert sandbox_state.paid_calls["openai"] == 1


async def test_sandbox_json_and_structured(sandbox: OpenAIProvider) -> None:
    as_json = await sandbox.generate_completion(CREDS, ask(response_format="json"))
    assert as_json.parsed == {"answer": "Sandbox answer to: Say hi"}
    structured = await sandbox.generate_completion(CREDS, ask(json_schema=SCHEMA))
    assert structured.parsed == {"title": "placeholder", "minutes": 0}


async def test_sandbox_stream(sandbox: OpenAIProvider) -> None:
    chunks = await assert_sandbox_streams(sandbox, CREDS)
    assert len(chunks) > 2


async def test_sandbox_unknown_model_is_bad_request(sandbox: OpenAIProvider) -> None:
    with pytest.raises(BadRequest, match="does not exist"):
        await sandbox.generate_completion(CREDS, ask(model="gpt-9"))


@pytest.mark.parametrize(("word", "error_class"), MAGIC_WORDS)
async def test_sandbox_magic_errors(
    sandbox: OpenAIProvider, sandbox_state: SandboxState, word: str, error_class: type
) -> None:
    plain, streamed = await raised_both_ways(sandbox, CREDS, f"please {word}", error_class)
    assert_secret_free(plain)
    assert_secret_free(streamed)
    expected_paid = 2 if word == "[refuse]" else 0  # a refusal is an answer, and billed
    assert sandbox_state.paid_calls["openai"] == expected_paid


async def test_sandbox_rate_limit_carries_retry_after(sandbox: OpenAIProvider) -> None:
    with pytest.raises(RateLimited) as caught:
        await sandbox.generate_completion(CREDS, ask("[ratelimit]"))
    assert caught.value.retry_after == pytest.approx(0.02)


async def test_sandbox_images(sandbox: OpenAIProvider, sandbox_state: SandboxState) -> None:
    b64 = await sandbox.call("generate_image", CREDS, {"prompt": "a red fox", "n": 2})
    assert [set(image) for image in b64["images"]] == [{"b64_json"}, {"b64_json"}]
    url = await sandbox.call(
        "generate_image",
        CREDS,
        {"prompt": "a red fox", "model": "dall-e-3", "response_format": "url"},
    )
    assert url["images"][0]["url"].startswith("https://")
    assert url["images"][0]["revised_prompt"] == "a red fox"
    with pytest.raises(ContentRejected):
        await sandbox.call("generate_image", CREDS, {"prompt": "[refuse]"})
    assert sandbox_state.paid_calls["openai"] == 2


async def test_sandbox_uses_the_platform_key(
    settings: Settings, sandbox_client: httpx.AsyncClient
) -> None:
    platform = settings.model_copy(update={"openai_api_key": SecretStr("invalid-platform-key")})
    provider = get_provider("openai", settings=platform, client=sandbox_client)
    with pytest.raises(InvalidCredentials):
        await provider.check_connection({})


# -- the official client against the emulator ------------------------------------------------


@pytest.fixture
async def official(sandbox_state: SandboxState) -> AsyncIterator[openai.AsyncOpenAI]:
    transport = httpx.ASGITransport(app=create_app(sandbox_state))
    async with httpx.AsyncClient(transport=transport) as http:
        yield openai.AsyncOpenAI(
            base_url="http://sandbox.test/openai", api_key=KEY, http_client=http, max_retries=0
        )


async def test_official_client_plain_completion(official: openai.AsyncOpenAI) -> None:
    answer = await official.chat.completions.create(
        model="gpt-6-luna",
        messages=[{"role": "user", "content": "Hi from the SDK [cached]"}],
        max_completion_tokens=64,
    )
    assert answer.choices[0].message.content == "Sandbox answer to: Hi from the SDK [cached]"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 1024


async def test_official_client_streamed_completion(official: openai.AsyncOpenAI) -> None:
    stream = await official.chat.completions.create(
        model="gpt-6-luna",
        messages=[{"role": "user", "content": "Stream from the SDK"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = [], None, None
    async for event in stream:
        for choice in event.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        usage = event.usage or usage
    assert "".join(text) == "Sandbox answer to: Stream from the SDK"
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_official_client_sees_the_quota_error(official: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await official.chat.completions.create(
            model="gpt-6-luna", messages=[{"role": "user", "content": "[quota]"}]
        )
    assert caught.value.code == "insufficient_quota"


# -- injected sandbox faults use the vendor's own error bodies -------------------------------


@pytest.mark.parametrize(("knobs", "error_class"), INJECTED_FAULTS)
async def test_sandbox_injected_faults_map_to_the_taxonomy(
    sandbox: OpenAIProvider, sandbox_state: SandboxState, knobs: dict, error_class: type
) -> None:
    await assert_injected_fault_is_mapped(sandbox, sandbox_state, CREDS, knobs, error_class)
