"""GLM: request bodies per the reference, business-code mapping, SSE, golden usage, sandbox."""

from __future__ import annotations

import json

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
from arkyra.providers.ai.glm import GLM_CHINA_BASE_URL, GLMProvider
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
    golden,
    raised_both_ways,
    sse,
)

REAL = "https://api.z.ai/api/paas/v4"
KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0.AbCdEfGhIjKlMnOp"
CREDS = {"api_key": KEY, "label": "Zhipu"}
CHAT = ChatRoute(f"{REAL}/chat/completions", CREDS)
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "tags": {"type": "array"}},
    "required": ["title", "tags"],
}
CHAT_OK = {
    "id": "1",
    "request_id": "1",
    "created": 1,
    "model": "glm-4.7",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}


def glm_error(code: str, message: str = "error") -> dict:
    return {"error": {"code": code, "message": message}}


settings, real, sandbox = ai_provider_fixtures("glm", GLMProvider)


# -- catalogue and base URLs -----------------------------------------------------------------


def test_catalogue_entry() -> None:
    assert_ai_catalogue_entry(GLMProvider, "glm", REAL)
    assert GLM_CHINA_BASE_URL == "https://open.bigmodel.cn/api/paas/v4"
    assert "ARKYRA_GLM_BASE_URL" in GLMProvider.description
    assert GLMProvider.models["glm-4.7-flash"].free
    assert GLMProvider.models["glm-5.2"].context_window == 1_000_000
    assert all("structured_output" not in m.capabilities for m in GLMProvider.models.values())


async def test_china_base_url_is_chosen_by_the_override(settings: Settings) -> None:
    china = settings.model_copy(update={"sandbox": False, "glm_base_url": GLM_CHINA_BASE_URL})
    async with httpx.AsyncClient() as client:
        provider = get_provider("glm", settings=china, client=client)
        with respx.mock(base_url=GLM_CHINA_BASE_URL) as mock:
            route = mock.post("/chat/completions").respond(200, json=CHAT_OK)
            await provider.generate_completion(CREDS, ask())
    assert route.called


# -- check_connection ------------------------------------------------------------------------


async def test_check_connection_is_a_one_token_call_on_the_free_model(real: GLMProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/chat/completions").respond(200, json=CHAT_OK)
        account = await real.check_connection(CREDS)
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "glm-4.7-flash",
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    }
    assert account.id == real.fingerprint(KEY)
    assert account.name == "Zhipu"


@pytest.mark.parametrize(
    ("status", "code"), [(429, "1302"), (429, "1113"), (500, "500"), (401, "1002")]
)
async def test_is_healthy_is_false_on_vendor_errors(
    real: GLMProvider, status: int, code: str
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/chat/completions").respond(status, json=glm_error(code))
        assert await real.is_healthy(CREDS) is False


# -- request bodies --------------------------------------------------------------------------


async def sent_body(real: GLMProvider, request: CompletionRequest, answer: str = "Hi") -> dict:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["message"]["content"] = answer
    _, sent = await CHAT.complete(real, request, json=reply)
    return json.loads(sent.content)


async def test_plain_body(real: GLMProvider) -> None:
    body = await sent_body(real, ask(max_tokens=200, temperature=0.3))
    assert body == {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 200,
        "temperature": 0.3,
    }


async def test_temperature_is_capped_at_one(real: GLMProvider) -> None:
    body = await sent_body(real, ask(temperature=1.7))
    assert body["temperature"] == 1.0


async def test_json_mode_body(real: GLMProvider) -> None:
    body = await sent_body(real, ask("Give JSON", response_format="json"), answer='{"a": 1}')
    assert body == {
        "model": "glm-4.7",
        "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Give JSON"}],
        "max_tokens": 1024,
    }


async def test_structured_output_is_json_mode_plus_the_schema(real: GLMProvider) -> None:
    request = ask(json_schema=SCHEMA)
    body = await sent_body(real, request, answer='{"title": "t", "tags": []}')
    instruction = body["messages"][0]
    assert body["response_format"] == {"type": "json_object"}
    assert instruction["role"] == "system"
    assert instruction["content"].endswith("Schema: " + json.dumps(SCHEMA, separators=(",", ":")))
    assert body["messages"][1:] == [{"role": "user", "content": "Say hi"}]


# -- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    (429, "1113", QuotaExhausted),
    (429, "1302", RateLimited),
    (429, "1303", RateLimited),
    (429, "1305", RateLimited),
    (429, "1304", QuotaExhausted),
    (429, "1308", QuotaExhausted),
    (400, "1261", ContextTooLong),
    (400, "1301", ContentRejected),
    (400, "1300", ContentRejected),
    (401, "1000", InvalidCredentials),
    (401, "1001", InvalidCredentials),
    (401, "1002", InvalidCredentials),
    (401, "1003", InvalidCredentials),
    (401, "1004", InvalidCredentials),
    (429, "1110", InvalidCredentials),
    (429, "1112", InvalidCredentials),
    (429, "1121", InvalidCredentials),
    (500, "1120", Transient),
    (500, "1234", Transient),
    (400, "1211", BadRequest),
    (400, "1214", BadRequest),
    (500, "500", Transient),
]


@pytest.mark.parametrize(("status", "code", "error_class"), ERROR_CASES)
async def test_business_codes_are_mapped(
    real: GLMProvider, status: int, code: str, error_class: type
) -> None:
    error = await CHAT.raised(real, ProviderError, status, json=glm_error(code, f"code {code}"))
    assert type(error) is error_class
    assert (error.status, error.code) == (status, code)
    assert_secret_free(error, KEY)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, RateLimited), (401, InvalidCredentials), (502, Transient), (400, BadRequest)],
)
async def test_bodies_without_a_code_fall_back_to_the_status(
    real: GLMProvider, status: int, error_class: type
) -> None:
    await CHAT.raised(real, error_class, status, text="<html>gateway</html>")


async def test_arrears_are_not_retried_but_concurrency_is(settings: Settings) -> None:
    retrying = settings.model_copy(update={"sandbox": False, "http_max_attempts": 2})
    async with httpx.AsyncClient() as client:
        provider = get_provider("glm", settings=retrying, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.post("/chat/completions").respond(429, json=glm_error("1113"))
            with pytest.raises(QuotaExhausted):
                await provider.generate_completion(CREDS, ask())
            assert route.call_count == 1
            route.respond(429, json=glm_error("1302"), headers={"retry-after": "0"})
            with pytest.raises(RateLimited):
                await provider.generate_completion(CREDS, ask())
            assert route.call_count == 1 + 2


async def test_an_echoed_key_is_redacted(real: GLMProvider) -> None:
    error = await CHAT.raised(
        real, InvalidCredentials, 401, json=glm_error("1002", f"bad token {KEY}")
    )
    assert_secret_free(error, KEY)


@pytest.mark.parametrize(
    ("finish", "error_class"), [("sensitive", ContentRejected), ("network_error", Transient)]
)
async def test_finish_reasons_that_are_errors(
    real: GLMProvider, finish: str, error_class: type
) -> None:
    reply = json.loads(json.dumps(CHAT_OK))
    reply["choices"][0]["finish_reason"] = finish
    with pytest.raises(error_class):
        await CHAT.complete(real, ask(), json=reply)


# -- streaming and golden responses ----------------------------------------------------------


async def test_golden_completion_normalises_cached_tokens(real: GLMProvider) -> None:
    completion, _ = await CHAT.complete(real, ask(), json=golden("glm_chat_completion.json"))
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (70, 1280, 96)
    assert usage.total_input_tokens == 1350
    assert completion.content == "Short videos that open with a question keep viewers longer."
    assert completion.vendor_id == "20261103153012a8b4c1d2e3f4a5b6c7"


async def test_golden_stream(real: GLMProvider) -> None:
    chunks, sent = await CHAT.streamed(real, text=sse(*golden("glm_chat_stream.json")["events"]))
    body = json.loads(sent.content)
    assert body["stream"] is True
    assert "stream_options" not in body
    assert "".join(c.delta for c in chunks) == "Hook first."
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (18, 9)


async def test_stream_error_status_raises_before_the_first_chunk(real: GLMProvider) -> None:
    await CHAT.raised_before_first_chunk(real, QuotaExhausted, 429, json=glm_error("1113"))


# -- the sandbox, end to end -----------------------------------------------------------------


async def test_sandbox_check_connection_is_free(
    sandbox: GLMProvider, sandbox_state: SandboxState
) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id == sandbox.fingerprint(KEY)
    assert await sandbox.is_healthy(CREDS) is True
    assert await sandbox.is_healthy({"api_key": "invalid-key"}) is False
    assert sandbox_state.paid_calls["glm"] == 0


async def test_sandbox_completion_json_and_structured(
    sandbox: GLMProvider, sandbox_state: SandboxState
) -> None:
    plain = await sandbox.generate_completion(CREDS, ask("Hello [cached]", temperature=1.9))
    assert plain.content == "Sandbox answer to: Hello [cached]"
    assert plain.usage.cached_tokens == 1024
    as_json = await sandbox.generate_completion(CREDS, ask("Reply in JSON", response_format="json"))
    assert as_json.parsed == {"answer": "Sandbox answer to: Reply in JSON"}
    structured = await sandbox.generate_completion(CREDS, ask(json_schema=SCHEMA))
    assert structured.parsed == {"title": "placeholder", "tags": []}
    assert sandbox_state.paid_calls["glm"] == 3


async def test_sandbox_stream(sandbox: GLMProvider) -> None:
    await assert_sandbox_streams(sandbox, CREDS)


async def test_sandbox_unknown_model(sandbox: GLMProvider) -> None:
    with pytest.raises(BadRequest) as caught:
        await sandbox.generate_completion(CREDS, ask(model="glm-9"))
    assert caught.value.code == "1211"


@pytest.mark.parametrize(("word", "error_class"), MAGIC_WORDS)
async def test_sandbox_magic_errors(
    sandbox: GLMProvider, sandbox_state: SandboxState, word: str, error_class: type
) -> None:
    plain, _ = await raised_both_ways(sandbox, CREDS, word, error_class)
    assert_secret_free(plain, KEY)
    assert sandbox_state.paid_calls["glm"] == 0


async def test_sandbox_invalid_key(sandbox: GLMProvider) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await sandbox.generate_completion({"api_key": "invalid-zzz"}, ask())
    assert caught.value.code == "1000"


# -- injected sandbox faults use the vendor's own error bodies -------------------------------


@pytest.mark.parametrize(("knobs", "error_class"), INJECTED_FAULTS)
async def test_sandbox_injected_faults_map_to_the_taxonomy(
    sandbox: GLMProvider, sandbox_state: SandboxState, knobs: dict, error_class: type
) -> None:
    await assert_injected_fault_is_mapped(sandbox, sandbox_state, CREDS, knobs, error_class)


@pytest.mark.parametrize(
    ("error", "error_class"),
    [({"code": "1301", "message": "unsafe"}, ContentRejected), ({"message": "boom"}, Transient)],
)
async def test_error_event_mid_stream(real: GLMProvider, error: dict, error_class: type) -> None:
    first = {"id": "1", "model": "glm-4.7", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    with respx.mock(base_url=REAL) as mock:
        mock.post("/chat/completions").respond(200, text=sse(first, {"error": error}))
        stream = real.stream_completion(CREDS, ask(stream=True))
        assert (await anext(stream)).delta == "Hi"
        with pytest.raises(error_class) as caught:
            await anext(stream)
    assert caught.value.status is None
