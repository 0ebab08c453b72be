"""Anthropic Claude: the Messages API (reference section 10).

Auth is ``x-api-key`` plus ``anthropic-version: 2023-06-01``. System messages go to the
top-level ``system``. Structured output uses ``output_config.format`` (JSON schema); only the
older families (3.x, 4.x) get the classic forced tool instead. The 5.5 family rejects forced
tool choice and sampling parameters with a 400, so those are never sent to it.

Errors come as ``{"type": "error", "error": {"type", "message"}}``; the type decides
(``overloaded_error`` 529 is transient, ``billing_error`` an empty balance, a "prompt is too
long" ``invalid_request_error`` a context overflow). Finish reasons are normalised to the
OpenAI words (``stop``, ``length``, ``tool_calls``); ``refusal`` raises ``ContentRejected``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

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
from arkyra.http.retry import parse_retry_after
from arkyra.providers.ai._base import (
    BaseAIProvider,
    Capability,
    ChatMessage,
    Completion,
    CompletionRequest,
    ModelInfo,
    StreamChunk,
    Usage,
)
from arkyra.providers.ai._openai_compat import (
    account_info,
    open_stream,
    parse_json_answer,
    probe_is_healthy,
    redact,
    request_secrets,
    resolve_api_key,
    response_body,
    sse_events,
    sse_json,
)
from arkyra.providers.base import AccountInfo, api_key_field, third_party

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else: no prose, no code fences."
#: Families that predate ``output_config.format``: structured output is a forced tool there.
FORCED_TOOL_FAMILIES = ("claude-3", "claude-haiku-4", "claude-sonnet-4", "claude-opus-4")
#: Families that answer 400 to sampling parameters and forced tool choice.
NO_SAMPLING_FAMILIES = ("claude-sonnet-5-5", "claude-opus-5-5")
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}
PROMPT_TOO_LONG = re.compile(r"prompt is too long|too many tokens|context window", re.I)
LOW_BALANCE = re.compile(r"credit balance is too low|billing", re.I)
TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "timeout_error"})
CREDENTIAL_TYPES = frozenset({"authentication_error", "permission_error"})

_ALL: frozenset[Capability] = frozenset(
    {"json", "structured_output", "images", "streaming", "tools"}
)


def _model(model_id: str, output: int) -> ModelInfo:
    return ModelInfo(
        id=model_id, context_window=200_000, max_output_tokens=output, capabilities=_ALL
    )


def uses_forced_tool(model: str) -> bool:
    return model.startswith(FORCED_TOOL_FAMILIES)


def allows_sampling(model: str) -> bool:
    return not model.startswith(NO_SAMPLING_FAMILIES)


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> Usage:
    """Anthropic's ``input_tokens`` already excludes cache reads and writes."""
    usage = usage or {}
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        cached_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
    )


def finish_reason_of(stop_reason: str | None) -> str | None:
    return FINISH_REASONS.get(stop_reason or "", stop_reason)


def system_of(request: CompletionRequest) -> str | list[dict[str, Any]] | None:
    """The top-level ``system``: joined text, or content blocks when any system message has
    blocks (so ``cache_control`` marks survive); JSON mode adds its instruction."""
    parts: list[Any] = [m.content for m in request.messages if m.role == "system" and m.content]
    if request.response_format == "json" and request.json_schema is None:
        parts.append(JSON_INSTRUCTION)
    if not parts:
        return None
    if all(isinstance(part, str) for part in parts):
        return "\n\n".join(parts)
    blocks: list[dict[str, Any]] = []
    for part in parts:
        blocks.extend([{"type": "text", "text": part}] if isinstance(part, str) else part)
    return blocks


def _claude_message(message: ChatMessage) -> dict[str, Any]:
    """Claude knows only ``user`` and ``assistant``; a tool result travels as ``user``."""
    role = "assistant" if message.role == "assistant" else "user"
    return {"role": role, "content": message.content if message.content is not None else ""}


@third_party(
    identifier="claude",
    title="Anthropic Claude",
    description="Claude chat models with structured output, via the Anthropic Messages API.",
    category="ai",
    fields=[api_key_field(help="console.anthropic.com > API keys (sk-ant-...).")],
)
class ClaudeProvider(BaseAIProvider):
    """Messages from Anthropic's Claude."""

    default_base_url = "https://api.anthropic.com"
    default_model = "claude-haiku-5-5"
    #: Ids and windows beyond the reference's price table are UNCONFIRMED.
    models = {
        "claude-opus-5-5": _model("claude-opus-5-5", 64_000),
        "claude-sonnet-5-5": _model("claude-sonnet-5-5", 64_000),
        "claude-haiku-5-5": _model("claude-haiku-5-5", 64_000),
        "claude-haiku-4-5": _model("claude-haiku-4-5", 64_000),
    }

    def api_key(self, credentials: Mapping[str, str]) -> str:
        return resolve_api_key(self, credentials)

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"x-api-key": self.api_key(credentials), "anthropic-version": ANTHROPIC_VERSION}

    # -- the contract ------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v1/models?limit=1`` (free); ``anthropic-organization-id`` names the account."""
        response = await self.probe(credentials)
        return account_info(self, response, credentials, "anthropic-organization-id")

    async def is_healthy(self, credentials: Mapping[str, str]) -> bool:
        """The free model-list probe; any provider error (529, 429, bad key) means unhealthy."""
        return await probe_is_healthy(self.probe(credentials))

    async def probe(self, credentials: Mapping[str, str]) -> httpx.Response:
        return await self.request("GET", "/v1/models", credentials, params={"limit": 1})

    # -- the request -------------------------------------------------------------------------

    def messages_body(self, request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
        """The Messages body; parameters the model rejects are left out."""
        model = request.model or self.default_model
        system = system_of(request)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": [_claude_message(m) for m in request.messages if m.role != "system"],
        }
        if system:
            body["system"] = system
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if request.temperature is not None and allows_sampling(model):
            body["temperature"] = min(request.temperature, 1.0)
        if request.json_schema is not None:
            if uses_forced_tool(model):
                body["tools"] = [
                    {
                        "name": request.schema_name,
                        "description": "Return the answer as this tool's input.",
                        "input_schema": request.json_schema,
                    }
                ]
                body["tool_choice"] = {"type": "tool", "name": request.schema_name}
            else:
                body["output_config"] = {
                    "format": {"type": "json_schema", "schema": request.json_schema}
                }
        if stream:
            body["stream"] = True
        return body

    # -- completions -------------------------------------------------------------------------

    async def generate_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> Completion:
        body = await self.post_json(MESSAGES_PATH, credentials, self.messages_body(request))
        return self.completion_from(body, request)

    def completion_from(self, body: Any, request: CompletionRequest) -> Completion:
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise Transient("answered without content", provider=self.identifier)
        stop_reason = body.get("stop_reason")
        self.check_stop(stop_reason)
        finish_reason = finish_reason_of(stop_reason)
        blocks = [b for b in body["content"] if isinstance(b, dict)]
        content = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        parsed = None
        tool_input = next((b.get("input") for b in blocks if b.get("type") == "tool_use"), None)
        if request.json_schema is not None and tool_input is not None:
            parsed = tool_input
            content = json.dumps(tool_input)
            finish_reason = "stop" if finish_reason == "tool_calls" else finish_reason
        elif request.json_schema is not None or request.response_format == "json":
            parsed = parse_json_answer(self.identifier, content, finish_reason)
        return Completion(
            provider=self.identifier,
            model=body.get("model") or request.model or self.default_model,
            content=content,
            finish_reason=finish_reason,
            usage=usage_from_anthropic(body.get("usage")),
            parsed=parsed,
            vendor_id=body.get("id"),
        )

    def check_stop(self, stop_reason: str | None) -> None:
        if stop_reason == "refusal":
            raise ContentRejected(
                "the model refused to answer", provider=self.identifier, code="refusal"
            )

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        body = self.messages_body(request, stream=True)
        model: str = body["model"]
        usage: dict[str, Any] = {}
        stop_reason: str | None = None
        async with open_stream(self, MESSAGES_PATH, credentials, body) as response:
            async for event in sse_events(response):
                payload = sse_json(self.identifier, event)
                kind = payload.get("type") if isinstance(payload, dict) else None
                if kind == "error" or event.event == "error":
                    error = self.error_for(None, payload, httpx.Headers())
                    raise redact(error, request_secrets(response))
                if kind == "message_start":
                    message = payload.get("message") or {}
                    model = message.get("model") or model
                    usage.update(message.get("usage") or {})
                elif kind == "content_block_delta":
                    delta = payload.get("delta") or {}
                    text = delta.get("text") or delta.get("partial_json") or ""
                    if text:
                        yield StreamChunk(delta=text, model=model)
                elif kind == "message_delta":
                    stop_reason = (payload.get("delta") or {}).get("stop_reason") or stop_reason
                    usage.update(
                        {k: v for k, v in (payload.get("usage") or {}).items() if v is not None}
                    )
                elif kind == "message_stop":
                    break
        self.check_stop(stop_reason)
        finish_reason = finish_reason_of(stop_reason)
        if request.json_schema is not None and finish_reason == "tool_calls":
            finish_reason = "stop"
        yield StreamChunk(
            finish_reason=finish_reason, usage=usage_from_anthropic(usage), model=model
        )

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        error = self.error_for(response.status_code, response_body(response), response.headers)
        return redact(error, request_secrets(response))

    def error_for(self, status: int | None, body: Any, headers: httpx.Headers) -> ProviderError:
        """``error.type`` first, then the status (``status`` is None for a mid-stream event)."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        kind = str(error.get("type") or "") or None
        message = str(error.get("message") or (body if isinstance(body, str) else "") or "error")
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": kind}
        code = status or 0
        if kind in TRANSIENT_TYPES or code == 529 or code >= 500 or code in (408, 409):
            return Transient(message, **kw)
        if kind == "rate_limit_error" or code == 429:
            return RateLimited(message, retry_after=parse_retry_after(headers), **kw)
        if kind in CREDENTIAL_TYPES or code in (401, 403):
            return InvalidCredentials(message, **kw)
        if kind == "billing_error" or code == 402 or LOW_BALANCE.search(message):
            return QuotaExhausted(message, **kw)
        if kind == "request_too_large" or code == 413 or PROMPT_TOO_LONG.search(message):
            return ContextTooLong(message, **kw)
        if kind is None and code == 0:
            return Transient(message, **kw)
        return BadRequest(message, **kw)
