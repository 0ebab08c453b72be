"""Mistral: request bodies per the reference, the three error shapes, SSE, golden usage, sandbox."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from arkyra.errors import (
    BadRequest,
    ContextTooLong,
    InvalidCredentials,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers.ai import CompletionRequest
from arkyra.providers.ai.mistral import MistralProvider
from arkyra.sandbox.state import SandboxState
from tests.providers.ai_fixtures import (
    INJECTED_FAULTS,
    ChatRoute,
    ai_provider_fixtures,
    ask,
    assert_ai_catalogue_entry,
    assert_injected_fault_is_mapped,
    assert_secret_free,
    collect,
    golden,
    raised_both_ways,
    sse,
)

REAL = "https://api.mistral.ai/v1"
KEY = "mistral-test-Zx8Yw7Vu6Ts5Rq4P"
CREDS = {"api_key": KEY}
CHAT = ChatRoute(f"{REAL}/chat/completions", CREDS)
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string"}, "score": {"type": "number"}},
    "required": ["topic", "score"],
    "additionalProperties": False,
}
CHAT_OK = {
    "id": "x",
    "object": "chat.completion",
    "model": "mistral-small-latest",
    "created": 1,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}


def mistral_error(message: str, kind: str, code: str) -> dict:
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}


settings, real, sandbox = ai_provider_fixtures("mistral", MistralProvider)


def test_catalogue_entry() -> None:
    assert_ai_catalogue_entry(MistralProvider, "mistral", REAL)
    assert set(MistralProvider.models) == {
        "mistral-large-latest",
        "mistral-medium-latest",
        "mistral-small-latest",
        "magistral-medium-latest",
        "codestral-latest",
        "ministral-8b-latest",
    }


async def test_check_connection_lists_models(real: MistralProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/models").respond(200, json={"object": "list", "data": []})
        account = await real.check_connection(CREDS)
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert account.id == real.fingerprint(KEY)
    assert account.name == "Mistral AI"


# -- request bodies --------------------------------------------------------------------------


async def sent_body(real: MistralProvider, request: CompletionRequest, answer: str = "Hi") -> dict:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["message"]["content"] = answer
    _, sent = await CHAT.complete(real, request, json=reply)
    return json.loads(sent.content)


async def test_plain_body(real: MistralProvider) -> None:
    body = await sent_body(real, ask(max_tokens=64))
    assert body == {
        "model": "mistral-small-latest",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 64,
    }


async def test_json_mode_body(real: MistralProvider) -> None:
    body = await sent_body(real, ask(response_format="json", temperature=0.0), answer="{}")
    assert body == {
        "model": "mistral-small-latest",
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Answer with a single JSON object and nothing else."},
            {"role": "user", "content": "Say hi"},
        ],
        "max_tokens": 1024,
        "temperature": 0.0,
    }


async def test_structured_output_body(real: MistralProvider) -> None:
    request = ask(model="mistral-large-latest", json_schema=SCHEMA, schema_name="rating")
    body = await sent_body(real, request, answer='{"topic": "x", "score": 1}')
    assert body == {
        "model": "mistral-large-latest",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "rating", "schema": SCHEMA, "strict": True},
        },
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 1024,
    }


# -- errors ----------------------------------------------------------------------------------


async def raised(real: MistralProvider, status: int, **response: Any) -> ProviderError:
    error = await CHAT.raised(real, ProviderError, status, **response)
    assert_secret_free(error, KEY)
    return error


async def test_422_detail_is_bad_request_with_field_messages(real: MistralProvider) -> None:
    detail = [
        {"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": {}},
        {
            "type": "extra_forbidden",
            "loc": ["body", "foo"],
            "msg": "Extra inputs are not permitted",
        },
    ]
    error = await raised(real, 422, json={"detail": detail})
    assert isinstance(error, BadRequest)
    assert error.message == (
        "body.messages: Field required; body.foo: Extra inputs are not permitted"
    )
    assert error.code == "validation_error"


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (429, mistral_error("Rate limit exceeded", "rate_limited", "1300"), RateLimited),
        (
            429,
            mistral_error("Monthly spend limit reached for this workspace", "rate_limited", "1300"),
            QuotaExhausted,
        ),
        (429, {"message": "Requests rate limit exceeded"}, RateLimited),
        (401, {"message": "Unauthorized", "request_id": "abc"}, InvalidCredentials),
        (403, mistral_error("Forbidden", "forbidden", "1403"), InvalidCredentials),
        (
            400,
            mistral_error(
                "Prompt contains 140000 tokens and 0 draft tokens, too large for model with "
                "131072 maximum context length",
                "invalid_request_error",
                "3051",
            ),
            ContextTooLong,
        ),
        (400, mistral_error("Invalid model: x", "invalid_model", "1500"), BadRequest),
        (500, mistral_error("Internal error", "internal_server_error", "0"), Transient),
        (503, {"message": "Service unavailable"}, Transient),
    ],
)
async def test_errors_are_mapped(
    real: MistralProvider, status: int, body: dict, error_class: type
) -> None:
    error = await raised(real, status, json=body)
    assert type(error) is error_class
    assert error.status == status


async def test_rate_limit_reads_retry_after(real: MistralProvider) -> None:
    error = await raised(
        real,
        429,
        json=mistral_error("Rate limit exceeded", "rate_limited", "1300"),
        headers={"retry-after": "3"},
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


async def test_an_echoed_key_is_redacted(real: MistralProvider) -> None:
    error = await raised(real, 401, json={"message": f"Invalid key {KEY}"})
    assert "[redacted]" in error.message


# -- streaming and golden responses ----------------------------------------------------------


async def test_golden_completion(real: MistralProvider) -> None:
    reply = golden("mistral_chat_completion.json")
    completion, _ = await CHAT.complete(real, ask(json_schema=SCHEMA), json=reply)
    assert completion.parsed == {"topic": "render budgets", "score": 7}
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (74, 0, 21)


async def test_golden_stream_with_content_and_finish_in_one_chunk(real: MistralProvider) -> None:
    stream = sse(*golden("mistral_chat_stream.json")["events"])
    chunks, sent = await CHAT.streamed(real, text=stream)
    body = json.loads(sent.content)
    assert body["stream"] is True
    assert "stream_options" not in body  # not in Mistral's schema: it would be a 422
    assert "".join(c.delta for c in chunks) == "Bonjour !"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (9, 4)


async def test_stream_error_status_raises_before_the_first_chunk(real: MistralProvider) -> None:
    body = mistral_error("Rate limit exceeded", "rate_limited", "1300")
    await CHAT.raised_before_first_chunk(real, RateLimited, 429, json=body)


# -- the sandbox, end to end -----------------------------------------------------------------


async def test_sandbox_check_and_health(sandbox: MistralProvider) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id == sandbox.fingerprint(KEY)
    assert await sandbox.is_healthy(CREDS) is True
    assert await sandbox.is_healthy({"api_key": "invalid-x"}) is False


async def test_sandbox_completion_json_structured_and_stream(
    sandbox: MistralProvider, sandbox_state: SandboxState
) -> None:
    plain = await sandbox.generate_completion(CREDS, ask("Bonjour"))
    assert plain.content == "Sandbox answer to: Bonjour"
    as_json = await sandbox.generate_completion(CREDS, ask(response_format="json"))
    assert as_json.parsed == {"answer": "Sandbox answer to: Say hi"}
    structured = await sandbox.generate_completion(CREDS, ask(json_schema=SCHEMA))
    assert structured.parsed == {"topic": "placeholder", "score": 0}
    chunks = await collect(sandbox.stream_completion(CREDS, ask("Stream me", stream=True)))
    assert "".join(c.delta for c in chunks) == "Sandbox answer to: Stream me"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens > 0
    assert sandbox_state.paid_calls["mistral"] == 4


@pytest.mark.parametrize(
    ("word", "error_class"),
    [("[quota]", QuotaExhausted), ("[ratelimit]", RateLimited), ("[context]", ContextTooLong)],
)
async def test_sandbox_magic_errors(
    sandbox: MistralProvider, sandbox_state: SandboxState, word: str, error_class: type
) -> None:
    plain, _ = await raised_both_ways(sandbox, CREDS, word, error_class)
    assert_secret_free(plain, KEY)
    assert sandbox_state.paid_calls["mistral"] == 0


async def test_sandbox_rejects_unknown_fields_with_422(
    sandbox: MistralProvider, sandbox_client: httpx.AsyncClient
) -> None:
    response = await sandbox_client.post(
        "/mistral/chat/completions",
        json={"model": "mistral-small-latest", "messages": [], "max_completion_tokens": 5},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 422
    error = sandbox.error_from_response(response)
    assert isinstance(error, BadRequest)
    assert "max_completion_tokens" in error.message


async def test_sandbox_invalid_key(sandbox: MistralProvider) -> None:
    with pytest.raises(InvalidCredentials):
        await sandbox.generate_completion({"api_key": "invalid-key"}, ask())


# -- injected sandbox faults use the vendor's own error bodies -------------------------------


@pytest.mark.parametrize(("knobs", "error_class"), INJECTED_FAULTS)
async def test_sandbox_injected_faults_map_to_the_taxonomy(
    sandbox: MistralProvider, sandbox_state: SandboxState, knobs: dict, error_class: type
) -> None:
    await assert_injected_fault_is_mapped(sandbox, sandbox_state, CREDS, knobs, error_class)


async def test_error_event_mid_stream(real: MistralProvider) -> None:
    choice = {"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}
    first = {"id": "1", "model": "mistral-small-latest", "choices": [choice]}
    failure = mistral_error("Service overloaded", "service_unavailable", "3000")
    with respx.mock(base_url=REAL) as mock:
        mock.post("/chat/completions").respond(200, text=sse(first, failure))
        stream = real.stream_completion(CREDS, ask(stream=True))
        assert (await anext(stream)).delta == "Hi"
        with pytest.raises(Transient, match="overloaded"):
            await anext(stream)
