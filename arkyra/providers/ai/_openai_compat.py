"""Shared code for the OpenAI-style chat APIs (OpenAI, GLM, Mistral) and the AI edge helpers.

The three vendors speak nearly the same ``POST /chat/completions``: the body, the response, the
``usage`` block and the SSE stream differ only in a few names, which subclasses set as class
attributes. Claude reuses the vendor-neutral helpers here (key lookup, SSE parsing, opening a
stream, JSON answers, secret redaction).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    ProviderError,
    Transient,
)
from arkyra.providers.ai._base import (
    BaseAIProvider,
    ChatMessage,
    Completion,
    CompletionRequest,
    StreamChunk,
    Usage,
)
from arkyra.providers.base import AccountInfo, ThirdPartyProvider

REDACTED = "[redacted]"
#: JSON mode needs the word "JSON" in the prompt (OpenAI, Mistral); added only when missing.
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else."
#: Finish reasons that mean the vendor withheld (part of) the answer on policy grounds.
REFUSAL_FINISH_REASONS = frozenset({"content_filter", "sensitive", "refusal"})


# -- credentials and secrets -----------------------------------------------------------------


def resolve_api_key(provider: ThirdPartyProvider, credentials: Mapping[str, str] | None) -> str:
    """The organization's own key, else the platform key; neither is ``InvalidCredentials``."""
    key = ((credentials or {}).get("api_key") or "").strip()
    if key:
        return key
    platform = provider.settings.platform_key(provider.identifier)
    if platform:
        return platform
    variable = f"ARKYRA_{provider.identifier.upper().replace('-', '_')}_API_KEY"
    raise InvalidCredentials(
        f"no API key configured: connect an organization key or set {variable}",
        provider=provider.identifier,
    )


def request_secrets(response: httpx.Response) -> list[str]:
    """The credential values the request that produced ``response`` carried."""
    try:
        headers = response.request.headers
    except RuntimeError:  # a Response built by hand has no request
        return []
    found = []
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        found.append(authorization[7:].strip())
    if headers.get("x-api-key"):
        found.append(headers["x-api-key"].strip())
    return [secret for secret in found if secret]


def redact(error: ProviderError, secrets: list[str]) -> ProviderError:
    """Replace any credential value in ``error``'s message (vendors sometimes echo keys)."""
    message = error.message
    for secret in secrets:
        if len(secret) >= 4:
            message = message.replace(secret, REDACTED)
    if message != error.message:
        error.message = message
        error.args = (error._render(),)
    return error


def response_body(response: httpx.Response) -> Any:
    """The parsed JSON error body, or the text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text.strip()[:300]


# -- connection checks -----------------------------------------------------------------------


def account_info(
    provider: BaseAIProvider,
    response: httpx.Response,
    credentials: Mapping[str, str],
    header: str | None,
) -> AccountInfo:
    """The account from a vendor header, else a fingerprint of the key in use."""
    account_id = response.headers.get(header, "").strip() if header else ""
    if not account_id:
        account_id = provider.fingerprint(resolve_api_key(provider, credentials))
    return AccountInfo(id=account_id, name=credentials.get("label") or provider.title)


async def probe_is_healthy(probe: Awaitable[Any]) -> bool:
    """Whether a free probe succeeds; a provider error means unhealthy, never an exception."""
    try:
        await probe
    except ProviderError:
        return False
    return True


# -- JSON answers ----------------------------------------------------------------------------


def parse_json_answer(provider: str, content: str, finish_reason: str | None) -> Any:
    """The JSON value of a JSON-mode answer.

    Invalid JSON raises ``BadRequest``: the usual cause is a ``max_tokens`` too small for the
    answer (``finish_reason`` ``length``), which only the caller can fix, and another vendor
    would be paid for the same mistake; a fallback is therefore not offered.
    """
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except ValueError:
        hint = " (cut off by max_tokens; raise it)" if finish_reason == "length" else ""
        raise BadRequest(
            f"the model answered with invalid JSON{hint}", provider=provider, code="invalid_json"
        ) from None


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """A system instruction for vendors without native structured output."""
    return (
        "Answer with a single JSON object and nothing else. It must match this JSON schema. "
        f"Schema: {json.dumps(schema, separators=(',', ':'))}"
    )


# -- SSE -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Server-sent events from a streamed response (``event:`` defaults to ``message``)."""
    event = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SSEEvent(event, "\n".join(data))


def sse_json(provider: str, event: SSEEvent) -> Any:
    try:
        return json.loads(event.data)
    except ValueError:
        raise Transient("sent a stream event that is not JSON", provider=provider) from None


@asynccontextmanager
async def open_stream(
    provider: ThirdPartyProvider,
    path: str,
    credentials: Mapping[str, str],
    body: Mapping[str, Any],
) -> AsyncIterator[httpx.Response]:
    """POST ``body`` and yield the streaming response once it is known to be a success.

    An error status raises the mapped error before any chunk, so the router can fail over;
    a connection that breaks mid-stream is ``Transient``.
    """
    headers = {**provider.auth_headers(credentials), "accept": "text/event-stream"}
    try:
        async with provider.client.stream(
            "POST", f"{provider.base_url}{path}", json=body, headers=headers
        ) as response:
            if provider.is_error(response):
                await response.aread()
                raise provider.error_from_response(response)
            yield response
    except httpx.TransportError as exc:
        raise Transient(
            f"stream failed ({type(exc).__name__})", provider=provider.identifier
        ) from None


# -- the OpenAI-style provider ---------------------------------------------------------------


def usage_from_openai(usage: Mapping[str, Any] | None) -> Usage:
    """Normalise an OpenAI-style ``usage``: ``prompt_tokens`` includes cache reads and writes."""
    usage = usage or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = int(prompt_details.get("cached_tokens") or 0)
    cache_write = int(prompt_details.get("cache_write_tokens") or 0)
    return Usage(
        input_tokens=max(0, prompt - cached - cache_write),
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


class OpenAICompatProvider(BaseAIProvider):
    """``POST /chat/completions`` in the OpenAI dialect; subclasses map errors and set names."""

    chat_path: ClassVar[str] = "/chat/completions"
    #: ``max_completion_tokens`` (OpenAI) or ``max_tokens`` (GLM, Mistral).
    max_tokens_field: ClassVar[str] = "max_tokens"
    #: Whether ``response_format`` ``json_schema`` exists; else JSON mode plus an instruction.
    native_json_schema: ClassVar[bool] = True
    #: Whether to ask for usage in the stream (OpenAI); others always send it at the end.
    stream_usage_option: ClassVar[bool] = False
    #: The highest temperature the vendor accepts (None: whatever the request allows).
    max_temperature: ClassVar[float | None] = None
    #: The probe response header that names the account (None: a keyed fingerprint).
    account_header: ClassVar[str | None] = None

    def api_key(self, credentials: Mapping[str, str]) -> str:
        return resolve_api_key(self, credentials)

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key(credentials)}"}

    # -- the request -------------------------------------------------------------------------

    def chat_body(self, request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
        """The vendor's chat body; unset options are left out."""
        messages = [_message(m) for m in request.messages]
        body: dict[str, Any] = {"model": request.model or self.default_model}
        if request.json_schema is not None and self.native_json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": True,
                },
            }
        elif request.json_schema is not None:
            instruction = schema_instruction(request.json_schema)
            messages.insert(0, {"role": "system", "content": instruction})
            body["response_format"] = {"type": "json_object"}
        elif request.response_format == "json":
            body["response_format"] = {"type": "json_object"}
            if not any("json" in _text(m.get("content")).lower() for m in messages):
                messages.insert(0, {"role": "system", "content": JSON_INSTRUCTION})
        body["messages"] = messages
        body[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            limit = self.max_temperature
            body["temperature"] = (
                request.temperature if limit is None else min(request.temperature, limit)
            )
        if stream:
            body["stream"] = True
            if self.stream_usage_option:
                body["stream_options"] = {"include_usage": True}
        return body

    # -- completions -------------------------------------------------------------------------

    async def generate_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> Completion:
        body = await self.post_json(self.chat_path, credentials, self.chat_body(request))
        return self.completion_from(body, request)

    def completion_from(self, body: Any, request: CompletionRequest) -> Completion:
        """A :class:`Completion` from the vendor's response (refusals raise)."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices:
            raise Transient("answered without choices", provider=self.identifier)
        choice = choices[0]
        message = choice.get("message") or {}
        finish_reason = choice.get("finish_reason")
        self.check_finish(finish_reason, message.get("refusal"))
        content = message.get("content") or ""
        if not isinstance(content, str):  # some vendors send a list of parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        parsed = None
        if request.json_schema is not None or request.response_format == "json":
            parsed = parse_json_answer(self.identifier, content, finish_reason)
        return Completion(
            provider=self.identifier,
            model=body.get("model") or request.model or self.default_model,
            content=content,
            finish_reason=finish_reason,
            usage=usage_from_openai(body.get("usage")),
            parsed=parsed,
            vendor_id=body.get("id"),
        )

    def check_finish(self, finish_reason: str | None, refusal: str | None) -> None:
        """Raise for answers the vendor withheld or broke off."""
        if refusal:
            raise ContentRejected(refusal, provider=self.identifier, code="refusal")
        if finish_reason in REFUSAL_FINISH_REASONS:
            raise ContentRejected(
                "the answer was withheld by the content filter",
                provider=self.identifier,
                code=finish_reason,
            )

    async def stream_completion(
        self, credentials: Mapping[str, str], request: CompletionRequest
    ) -> AsyncIterator[StreamChunk]:
        body = self.chat_body(request, stream=True)
        model = body["model"]
        finish_reason: str | None = None
        refusal: list[str] = []
        usage = Usage()
        async with open_stream(self, self.chat_path, credentials, body) as response:
            async for event in sse_events(response):
                if event.data.strip() == "[DONE]":
                    break
                payload = sse_json(self.identifier, event)
                if isinstance(payload, dict) and (
                    payload.get("error") or payload.get("object") == "error"
                ):
                    raise redact(self.stream_error(payload), request_secrets(response))
                model = payload.get("model") or model
                if payload.get("usage"):
                    usage = usage_from_openai(payload["usage"])
                for choice in payload.get("choices") or []:
                    delta = choice.get("delta") or {}
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if delta.get("refusal"):
                        refusal.append(delta["refusal"])
                    if delta.get("content"):
                        yield StreamChunk(delta=delta["content"], model=model)
        self.check_finish(finish_reason, "".join(refusal) or None)
        yield StreamChunk(finish_reason=finish_reason, usage=usage, model=model)

    # -- health and errors -------------------------------------------------------------------

    async def probe(self, credentials: Mapping[str, str]) -> httpx.Response:
        """The free call that proves a key: the model list (GLM overrides)."""
        return await self.request("GET", "/models", credentials)

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """The free :meth:`probe`; the account is named by :attr:`account_header` if sent."""
        response = await self.probe(credentials)
        return account_info(self, response, credentials, self.account_header)

    async def is_healthy(self, credentials: Mapping[str, str]) -> bool:
        """The free :meth:`probe`; any provider error (5xx, 429, bad key) means unhealthy."""
        return await probe_is_healthy(self.probe(credentials))

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map status and body once (:meth:`error_for`), then strip any echoed key."""
        error = self.error_for(response.status_code, response_body(response), response.headers)
        return redact(error, request_secrets(response))

    def stream_error(self, payload: Mapping[str, Any]) -> ProviderError:
        """An ``{"error": ...}`` event inside a stream that had started with 200."""
        return self.error_for(None, payload, httpx.Headers())

    @abstractmethod
    def error_for(self, status: int | None, body: Any, headers: httpx.Headers) -> ProviderError:
        """The taxonomy class for a vendor error body; ``status`` is None mid-stream, where
        an error the body does not explain is a broken stream (``Transient``)."""


def _message(message: ChatMessage) -> dict[str, Any]:
    return message.model_dump(exclude_none=True)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
