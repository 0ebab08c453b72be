"""Claude: Messages bodies per the reference (system, structured output per model family),
headers, error types, SSE events, golden usage, and the sandbox end to end."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    ContentRejected,
    ContextTooLong,
    InvalidCredentials,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import get_provider
from arkyra.providers.ai import CompletionRequest
from arkyra.providers.ai.claude import JSON_INSTRUCTION, ClaudeProvider
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
    assert_secret_free,
    collect,
    golden,
    raised_both_ways,
)
from tests.providers.ai_fixtures import VIDEO_SCHEMA as SCHEMA

REAL = "https://api.anthropic.com"
KEY = "sk-ant-api03-test-Q9w8E7r6T5y4U3i2"
CREDS = {"api_key": KEY, "label": "Studio"}
MESSAGES = ChatRoute(f"{REAL}/v1/messages", CREDS)
MESSAGE_OK = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-5-5",
    "content": [{"type": "text", "text": "Hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 2},
}


def claude_error(kind: str, message: str = "error") -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


def sse(events: list[dict]) -> str:
    """Claude's named server-sent events (``event:`` then ``data:``), unlike the other vendors."""
    return "".join(f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n" for e in events)


settings, real, sandbox = ai_provider_fixtures("claude", ClaudeProvider)


def test_catalogue_entry() -> None:
    assert_ai_catalogue_entry(ClaudeProvider, "claude", REAL)
    assert {"claude-sonnet-5-5", "claude-haiku-4-5"} <= set(ClaudeProvider.models)


# -- check_connection and headers ------------------------------------------------------------


async def test_check_connection_reads_the_organization_id(real: ClaudeProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/models").respond(
            200,
            json={"data": [], "has_more": False, "first_id": None, "last_id": None},
            headers={"anthropic-organization-id": "org-uuid-1"},
        )
        account = await real.check_connection(CREDS)
    request = route.calls.last.request
    assert request.url.params["limit"] == "1"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert (account.id, account.name) == ("org-uuid-1", "Studio")


async def test_check_connection_without_the_header_uses_a_fingerprint(
    real: ClaudeProvider,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/models").respond(200, json={"data": []})
        account = await real.check_connection({"api_key": KEY})
    assert account.id == real.fingerprint(KEY)
    assert account.name == "Anthropic Claude"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(529, "overloaded_error"), (429, "rate_limit_error"), (401, "authentication_error")],
)
async def test_is_healthy_is_false_on_vendor_errors(
    real: ClaudeProvider, status: int, kind: str
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/models").respond(status, json=claude_error(kind))
        assert await real.is_healthy(CREDS) is False


# -- request bodies --------------------------------------------------------------------------


async def sent(
    real: ClaudeProvider, request: CompletionRequest, reply: dict | None = None
) -> tuple[dict, Any]:
    completion, request_sent = await MESSAGES.complete(real, request, json=reply or MESSAGE_OK)
    assert request_sent.headers["x-api-key"] == KEY
    assert request_sent.headers["anthropic-version"] == "2023-06-01"
    return json.loads(request_sent.content), completion


def text_reply(text: str, **changes: Any) -> dict:
    return {**MESSAGE_OK, "content": [{"type": "text", "text": text}], **changes}


async def test_plain_body_moves_system_to_the_top(real: ClaudeProvider) -> None:
    body, completion = await sent(real, ask(system="Be brief.", max_tokens=256))
    assert body == {
        "model": "claude-haiku-5-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say hi"}],
        "system": "Be brief.",
    }
    assert (completion.content, completion.finish_reason) == ("Hi", "stop")


async def test_temperature_is_sent_where_allowed_and_dropped_on_the_5_5_family(
    real: ClaudeProvider,
) -> None:
    body, _ = await sent(real, ask(temperature=1.4))
    assert body["temperature"] == 1.0
    body, _ = await sent(real, ask(model="claude-sonnet-5-5", temperature=0.5))
    assert "temperature" not in body


async def test_json_mode_is_an_instruction(real: ClaudeProvider) -> None:
    body, completion = await sent(real, ask(response_format="json"), text_reply('{"a": 1}'))
    assert body["system"] == JSON_INSTRUCTION
    assert "output_config" not in body
    assert completion.parsed == {"a": 1}


async def test_structured_output_uses_output_config_on_current_models(
    real: ClaudeProvider,
) -> None:
    request = ask(model="claude-sonnet-5-5", json_schema=SCHEMA)
    body, completion = await sent(real, request, text_reply('{"title": "t", "minutes": 1}'))
    assert body == {
        "model": "claude-sonnet-5-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Say hi"}],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }
    assert completion.parsed == {"title": "t", "minutes": 1}


async def test_structured_output_is_a_forced_tool_on_older_models(real: ClaudeProvider) -> None:
    reply = golden("claude_tool_use.json")
    request = ask(model="claude-haiku-4-5", json_schema=SCHEMA)
    body, completion = await sent(real, request, reply)
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Say hi"}],
        "tools": [
            {
                "name": "output",
                "description": "Return the answer as this tool's input.",
                "input_schema": SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": "output"},
    }
    assert completion.parsed == {"title": "Why caching pays", "minutes": 3}
    assert json.loads(completion.content) == completion.parsed
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (540, 61)


async def test_roles_are_user_and_assistant_only(real: ClaudeProvider) -> None:
    request = CompletionRequest(
        messages=[
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "tool", "content": [{"type": "text", "text": "result"}]},
        ]
    )
    body, _ = await sent(real, request)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("pause_turn", "pause_turn")],
)
async def test_stop_reasons_are_normalised(
    real: ClaudeProvider, stop_reason: str, finish: str
) -> None:
    _, completion = await sent(real, ask(), {**MESSAGE_OK, "stop_reason": stop_reason})
    assert completion.finish_reason == finish


async def test_refusal_is_content_rejected(real: ClaudeProvider) -> None:
    with pytest.raises(ContentRejected):
        await MESSAGES.complete(real, ask(), json={**MESSAGE_OK, "stop_reason": "refusal"})


# -- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    (529, "overloaded_error", "Overloaded", Transient),
    (500, "api_error", "Internal server error", Transient),
    (504, "timeout_error", "Request timed out", Transient),
    (429, "rate_limit_error", "Number of request tokens has exceeded your limit", RateLimited),
    (401, "authentication_error", "invalid x-api-key", InvalidCredentials),
    (403, "permission_error", "Your API key does not have permission", InvalidCredentials),
    (402, "billing_error", "Your account has a billing issue", QuotaExhausted),
    (400, "billing_error", "Billing problem", QuotaExhausted),
    (400, "invalid_request_error", "Your credit balance is too low to access the API",
     QuotaExhausted),
    (400, "invalid_request_error", "prompt is too long: 212345 tokens > 200000 maximum",
     ContextTooLong),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes",
     ContextTooLong),
    (400, "invalid_request_error", "max_tokens: Field required", BadRequest),
    (404, "not_found_error", "model: claude-9", BadRequest),
]  # fmt: skip


@pytest.mark.parametrize(("status", "kind", "message", "error_class"), ERROR_CASES)
async def test_error_types_are_mapped(
    real: ClaudeProvider, status: int, kind: str, message: str, error_class: type
) -> None:
    error = await MESSAGES.raised(real, ProviderError, status, json=claude_error(kind, message))
    assert type(error) is error_class
    assert (error.status, error.code) == (status, kind)
    assert_secret_free(error, KEY)


async def test_rate_limit_reads_retry_after(real: ClaudeProvider) -> None:
    error = await MESSAGES.raised(
        real, RateLimited, 429, json=claude_error("rate_limit_error"), headers={"retry-after": "7"}
    )
    assert error.retry_after == 7.0


async def test_overloaded_is_retried_on_the_same_provider(settings: Settings) -> None:
    retrying = settings.model_copy(update={"sandbox": False, "http_max_attempts": 2})
    async with httpx.AsyncClient() as client:
        provider = get_provider("claude", settings=retrying, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/v1/models")
            route.side_effect = [
                httpx.Response(529, json=claude_error("overloaded_error", "Overloaded")),
                httpx.Response(200, json={"data": []}),
            ]
            await provider.check_connection(CREDS)
    assert route.call_count == 2


async def test_an_echoed_key_is_redacted(real: ClaudeProvider) -> None:
    body = claude_error("authentication_error", f"invalid x-api-key {KEY}")
    error = await MESSAGES.raised(real, InvalidCredentials, 401, json=body)
    assert_secret_free(error, KEY)


# -- streaming and golden responses ----------------------------------------------------------


async def test_golden_message_normalises_cache_reads_and_writes(real: ClaudeProvider) -> None:
    request = ask(model="claude-sonnet-5-5", json_schema=SCHEMA)
    completion, _ = await MESSAGES.complete(real, request, json=golden("claude_message.json"))
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (312, 14336, 2048)
    assert usage.output_tokens == 187
    assert usage.total_input_tokens == 312 + 14336 + 2048
    assert completion.parsed == {"title": "Why caching pays", "minutes": 3}
    assert completion.vendor_id == "msg_01XFDUDYJgAACzvnptvVoYEL"


async def test_golden_stream(real: ClaudeProvider) -> None:
    chunks, sent = await MESSAGES.streamed(
        real,
        text=sse(golden("claude_stream.json")["events"]),
        headers={"content-type": "text/event-stream"},
    )
    body = json.loads(sent.content)
    assert body["stream"] is True
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "".join(c.delta for c in chunks) == "Hello!"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.cached_tokens) == (25, 4096)
    assert final.usage.output_tokens == 15


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [
        ("overloaded_error", Transient),
        ("api_error", Transient),
        ("rate_limit_error", RateLimited),
        ("invalid_request_error", BadRequest),
    ],
)
async def test_error_event_mid_stream(real: ClaudeProvider, kind: str, error_class: type) -> None:
    events = golden("claude_stream.json")["events"][:4]
    events.append({"event": "error", "data": claude_error(kind, "mid-stream failure")})
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/messages").respond(200, text=sse(events))
        stream = real.stream_completion(CREDS, ask(stream=True))
        first = await anext(stream)
        assert first.delta == "Hello"
        with pytest.raises(error_class, match="mid-stream failure"):
            await anext(stream)


async def test_stream_error_status_raises_before_the_first_chunk(real: ClaudeProvider) -> None:
    body = claude_error("overloaded_error")
    await MESSAGES.raised_before_first_chunk(real, Transient, 529, json=body)


# -- the sandbox, end to end -----------------------------------------------------------------


async def test_sandbox_check_connection_and_health(sandbox: ClaudeProvider) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id != sandbox.fingerprint(KEY)  # the organization header, not a fingerprint
    assert len(account.id) == 36
    assert await sandbox.is_healthy(CREDS) is True
    assert await sandbox.is_healthy({"api_key": "invalid-x"}) is False


async def test_sandbox_completion_with_cache_reads(
    sandbox: ClaudeProvider, sandbox_state: SandboxState
) -> None:
    completion = await sandbox.generate_completion(CREDS, ask("Hi [cached]", system="Be kind."))
    assert completion.content == "Sandbox answer to: Hi [cached]"
    assert completion.usage.cached_tokens == 1024
    assert completion.usage.input_tokens < 100
    assert sandbox_state.paid_calls["claude"] == 1


async def test_sandbox_json_and_structured_per_family(sandbox: ClaudeProvider) -> None:
    as_json = await sandbox.generate_completion(CREDS, ask(response_format="json"))
    assert as_json.parsed == {"answer": "Sandbox answer to: Say hi"}
    for model in ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-4-5"):
        # the emulator refuses sampling params and forced tools on the 5.5 family, like the API
        request = ask(model=model, json_schema=SCHEMA, temperature=0.3)
        structured = await sandbox.generate_completion(CREDS, request)
        assert structured.parsed == {"title": "placeholder", "minutes": 0}, model


async def test_sandbox_stream_text_and_tool(sandbox: ClaudeProvider) -> None:
    await assert_sandbox_streams(sandbox, CREDS)
    request = ask(model="claude-haiku-4-5", json_schema=SCHEMA, stream=True)
    chunks = await collect(sandbox.stream_completion(CREDS, request))
    assert json.loads("".join(c.delta for c in chunks)) == {"title": "placeholder", "minutes": 0}
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize(("word", "error_class"), [*MAGIC_WORDS, ("[overloaded]", Transient)])
async def test_sandbox_magic_errors(sandbox: ClaudeProvider, word: str, error_class: type) -> None:
    plain, _ = await raised_both_ways(sandbox, CREDS, word, error_class)
    assert_secret_free(plain, KEY)


async def test_sandbox_error_event_mid_stream(sandbox: ClaudeProvider) -> None:
    with pytest.raises(Transient) as caught:
        await collect(sandbox.stream_completion(CREDS, ask("[stream-error]", stream=True)))
    assert caught.value.code == "overloaded_error"


async def test_sandbox_requires_the_version_header(sandbox_client: httpx.AsyncClient) -> None:
    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
    }
    response = await sandbox_client.post(
        "/claude/v1/messages", json=body, headers={"x-api-key": KEY}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_sandbox_refuses_system_inside_messages(sandbox_client: httpx.AsyncClient) -> None:
    body = {"model": "claude-haiku-5-5", "max_tokens": 5,
            "messages": [{"role": "system", "content": "x"}]}  # fmt: skip
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    response = await sandbox_client.post("/claude/v1/messages", json=body, headers=headers)
    assert response.status_code == 400
    assert "top-level `system`" in response.json()["error"]["message"]


async def test_sandbox_models_paginate(sandbox_client: httpx.AsyncClient) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    first = (await sandbox_client.get("/claude/v1/models?limit=2", headers=headers)).json()
    assert first["has_more"] is True
    second = (
        await sandbox_client.get(
            f"/claude/v1/models?limit=2&after_id={first['last_id']}", headers=headers
        )
    ).json()
    ids = [m["id"] for m in first["data"] + second["data"]]
    assert ids == list(ClaudeProvider.models)
    assert second["has_more"] is False


# -- injected sandbox faults use the vendor's own error bodies -------------------------------


@pytest.mark.parametrize(("knobs", "error_class"), INJECTED_FAULTS)
async def test_sandbox_injected_faults_map_to_the_taxonomy(
    sandbox: ClaudeProvider, sandbox_state: SandboxState, knobs: dict, error_class: type
) -> None:
    await assert_injected_fault_is_mapped(sandbox, sandbox_state, CREDS, knobs, error_class)


async def test_sandbox_injected_529_is_overloaded(
    sandbox: ClaudeProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("claude").update({"error_rate": 1, "error_status": 529})
    with pytest.raises(Transient) as caught:
        await sandbox.generate_completion(CREDS, ask())
    assert (caught.value.status, caught.value.code) == (529, "overloaded_error")


async def test_system_blocks_keep_cache_control_and_user_goes_to_metadata(
    real: ClaudeProvider,
) -> None:
    block = {"type": "text", "text": "Long brand guide", "cache_control": {"type": "ephemeral"}}
    request = CompletionRequest(
        messages=[
            {"role": "system", "content": [block]},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        user="org-42",
    )
    body, _ = await sent(real, request)
    assert body["system"] == [block, {"type": "text", "text": "Be brief."}]
    assert body["metadata"] == {"user_id": "org-42"}
