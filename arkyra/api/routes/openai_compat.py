"""An OpenAI-compatible front door: POST /v1/chat/completions through the AI router.

Any OpenAI client can point its base URL here. ``model`` picks the provider that serves it (an
unknown or ``auto`` model lets the chain decide); ``x-arkyra-task-type`` selects the task chain.
``stream: true`` answers Server-Sent Events in OpenAI's chunk format; failover happens before the
first token, so an error before it is still a normal JSON error response.

``Idempotency-Key`` works for both: a repeated key replays the stored answer (as JSON, or as a
short SSE stream for ``stream: true``, whichever way it was first asked) with
``idempotent-replayed: true``, without calling or billing a provider again. A streamed
duplicate of a request still running answers 409; a key whose stream was cut off after it had
started answers 422 ``idempotency_incomplete`` with the billed partial answer (see
:class:`arkyra.router.service.RoutedStream` for why it is not run again).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from arkyra.api.deps import AILimited
from arkyra.api.routes.ai import (
    AIRouterDep,
    FastJSONResponse,
    all_failed_response,
    credentials_lookup,
    in_progress_response,
    incomplete_response,
    quota_response,
    route_headers,
)
from arkyra.errors import InvalidInput, ProviderError
from arkyra.providers.ai._base import ChatMessage, Completion, CompletionRequest, Usage
from arkyra.router.idempotency import IdempotencyIncomplete, IdempotencyInProgress
from arkyra.router.quota import QuotaExceeded
from arkyra.router.service import AllProvidersFailed, ReplayedStream, RoutedStream

router = APIRouter(tags=["openai-compatible"])

AUTO_MODELS = frozenset({"", "auto", "arkyra", "arkyra/auto", "default"})


class ChatCompletionBody(BaseModel):
    """The subset of OpenAI's chat request the router understands (other fields are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    def to_request(self, task_type: str | None) -> CompletionRequest:
        values: dict[str, Any] = {
            "messages": self.messages,
            "model": None if (self.model or "").lower() in AUTO_MODELS else self.model,
            "temperature": self.temperature,
            "stream": self.stream,
            "user": self.user,
            "task_type": task_type or "completion",
        }
        limit = self.max_completion_tokens or self.max_tokens
        if limit is not None:
            values["max_tokens"] = limit
        kind = (self.response_format or {}).get("type")
        if kind == "json_object":
            values["response_format"] = "json"
        elif kind == "json_schema":
            spec = (self.response_format or {}).get("json_schema") or {}
            if not isinstance(spec.get("schema"), dict):
                raise InvalidInput(
                    "response_format.json_schema.schema must be an object",
                    {"response_format": "json_schema needs a schema"},
                )
            values["response_format"] = "json"
            values["json_schema"] = spec["schema"]
            values["schema_name"] = spec.get("name") or "output"
        return CompletionRequest(**values)


def openai_usage(usage: Usage) -> dict[str, Any]:
    """Back to OpenAI's semantics: prompt_tokens includes cached tokens."""
    return {
        "prompt_tokens": usage.total_input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def chat_completion(answer: Completion, completion_id: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content, "refusal": None},
                "finish_reason": answer.finish_reason or "stop",
            }
        ],
        "usage": openai_usage(answer.usage),
        "system_fingerprint": None,
    }


@router.post("/v1/chat/completions")
async def chat_completions(
    body: ChatCompletionBody,
    request: Request,
    principal: AILimited,
    ai: AIRouterDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    task_type: Annotated[str | None, Header(alias="x-arkyra-task-type")] = None,
) -> Any:
    org = principal.organization_id
    routed = body.to_request(task_type)
    request_id = uuid.uuid4().hex
    credentials_for = await credentials_lookup(request, org)
    try:
        if routed.stream:
            stream = await ai.stream(
                org,
                routed,
                request_id=request_id,
                idempotency_key=idempotency_key,
                credentials_for=credentials_for,
            )
        else:
            answer, route = await ai.complete(
                org,
                routed,
                request_id=request_id,
                idempotency_key=idempotency_key,
                credentials_for=credentials_for,
            )
    except QuotaExceeded as exc:
        return quota_response(exc)
    except AllProvidersFailed as exc:
        return all_failed_response(exc)
    except IdempotencyInProgress as exc:
        return in_progress_response(exc)
    except IdempotencyIncomplete as exc:
        return incomplete_response(exc)
    created = int(time.time())
    if routed.stream:
        completion_id = f"chatcmpl-{stream.route.request_id}"  # a replay keeps the first id
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return RoutedStreamingResponse(
            stream,
            sse(stream, completion_id, created, include_usage),
            media_type="text/event-stream",
            headers={**route_headers(stream.route), "cache-control": "no-cache"},
        )
    return FastJSONResponse(
        chat_completion(answer, f"chatcmpl-{route.request_id}", created),
        headers=route_headers(route),
    )


class RoutedStreamingResponse(StreamingResponse):
    """An SSE response that always ends its routed stream, also when the client left before
    the body started (the generator's own ``finally`` never runs then): the attempt is settled
    and recorded, and its Idempotency-Key stored, marked incomplete or released."""

    def __init__(
        self, routed: RoutedStream | ReplayedStream, content: AsyncIterator[bytes], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.routed = routed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.routed.aclose()


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def sse(
    stream: RoutedStream | ReplayedStream, completion_id: str, created: int, include_usage: bool
) -> AsyncIterator[bytes]:
    """OpenAI chunk events, then ``[DONE]``; a failure after the first token is sent as an
    ``error`` event (no failover once the answer has started)."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
    model = stream.model
    first = True
    usage: Usage | None = None
    try:
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
                first = False
            if chunk.delta:
                delta["content"] = chunk.delta
            if not delta and chunk.finish_reason is None:
                continue
            yield _event(
                {
                    **base,
                    "model": chunk.model or model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": chunk.finish_reason}],
                }
            )
        if include_usage and usage is not None:
            yield _event({**base, "model": model, "choices": [], "usage": openai_usage(usage)})
        yield b"data: [DONE]\n\n"
    except ProviderError as exc:
        yield _event(
            {"error": {"message": exc.message, "type": type(exc).__name__, "code": exc.code}}
        )
    finally:
        await stream.aclose()
