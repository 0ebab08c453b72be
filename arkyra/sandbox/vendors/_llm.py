"""Helpers shared by the chat-model emulators (OpenAI, GLM, Claude, Mistral).

Answers are deterministic: a short echo of the last user message, a JSON object in JSON mode,
and placeholder values for a JSON schema's required keys. Token counts are about four
characters a token. Magic words in the prompt trigger each documented vendor error.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

REJECTED_KEY_PREFIX = "invalid"
#: Prompt word -> the error it triggers (each emulator answers in its vendor's own body).
MAGIC_WORDS = {
    "[quota]": "quota",
    "[ratelimit]": "ratelimit",
    "[context]": "context",
    "[refuse]": "refuse",
    "[overloaded]": "overloaded",
    "[stream-error]": "stream_error",
}
CACHED_WORD = "[cached]"
SCHEMA_MARKER = "Schema: "
CHUNK_CHARS = 12


def text_of(content: Any) -> str:
    """The text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text") or "") for part in content if isinstance(part, dict)
        ).strip()
    return ""


def prompt_text(messages: Iterable[Mapping[str, Any]], system: Any = None) -> str:
    """Everything the model reads, for magic words and token counts."""
    parts = [text_of(system)] if system else []
    parts += [text_of(m.get("content")) for m in messages if isinstance(m, Mapping)]
    return "\n".join(p for p in parts if p)


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def magic(text: str) -> str | None:
    """The error a prompt asks for, if any."""
    return next((kind for word, kind in MAGIC_WORDS.items() if word in text), None)


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def echo(messages: Iterable[Mapping[str, Any]]) -> str:
    said = " ".join(last_user_text(messages).split())[:80]
    return f"Sandbox answer to: {said}"


def placeholder(schema: Any) -> Any:
    """A value of the schema's type; objects get their required keys (or all properties)."""
    if not isinstance(schema, Mapping):
        return "placeholder"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        keys = schema.get("required") or list(properties)
        return {key: placeholder(properties.get(key, {})) for key in keys}
    if kind == "array":
        return [placeholder(schema.get("items", {}))] if schema.get("minItems") else []
    return {"integer": 0, "number": 0, "boolean": False, "null": None}.get(str(kind), "placeholder")


def schema_in_prompt(text: str) -> Any:
    """A JSON schema given as an instruction (``Schema: {...}``), for vendors without
    native structured output."""
    start = text.find(SCHEMA_MARKER)
    if start < 0:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(text[start + len(SCHEMA_MARKER) :])
    except ValueError:
        return None
    return schema


def json_answer(messages: Iterable[Mapping[str, Any]], schema: Any = None) -> str:
    value = placeholder(schema) if schema is not None else {"answer": echo(messages)}
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Tokens:
    """Prompt tokens (``cached`` of them were cache reads) and answer tokens."""

    prompt: int
    cached: int
    completion: int


def tokens_for(prompt: str, answer: str) -> Tokens:
    total = count_tokens(prompt) + 1024 if CACHED_WORD in prompt else count_tokens(prompt)
    cached = 1024 if CACHED_WORD in prompt else 0
    return Tokens(prompt=total, cached=cached, completion=count_tokens(answer))


def cut(answer: str, max_tokens: int) -> tuple[str, bool]:
    """The answer cut to ``max_tokens`` (about four characters each), and whether it was."""
    limit = max_tokens * 4
    return (answer[:limit], True) if len(answer) > limit else (answer, False)


def pieces(text: str) -> list[str]:
    """The answer in small stream chunks that join back to ``text``."""
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def vendor_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:24]
    return f"{prefix}{digest}"


def bearer_key(request: Request) -> str | None:
    """The bearer token if present and accepted, else ``None``."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    key = header[7:].strip()
    return key if key and not key.startswith(REJECTED_KEY_PREFIX) else None


def masked(key: str) -> str:
    return f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"


async def json_body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or ``None`` when the body is not one."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n"


def sse_response(events: Iterable[str]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        for event in events:
            yield event

    return StreamingResponse(body(), media_type="text/event-stream")


# -- the OpenAI chat dialect (OpenAI, GLM and Mistral emulators) --------------------------------


@dataclass(frozen=True)
class ChatAnswer:
    """One emulated completion, before it is shaped as a body or a stream."""

    id: str
    model: str
    created: int
    content: str
    finish_reason: str
    tokens: Tokens
    refusal: str | None = None


def chat_answer(body: Mapping[str, Any], *, id_prefix: str, max_tokens: int) -> ChatAnswer:
    """The deterministic answer to an OpenAI-style chat body (already validated)."""
    messages = body["messages"]
    prompt = prompt_text(messages)
    response_format = body.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    truncated = False
    if kind == "json_schema":
        content = json_answer(messages, (response_format.get("json_schema") or {}).get("schema"))
    elif kind == "json_object":
        content = json_answer(messages, schema_in_prompt(prompt))
    else:
        content, truncated = cut(echo(messages), max_tokens)
    return ChatAnswer(
        id=vendor_id(id_prefix, body.get("model"), prompt),
        model=str(body.get("model")),
        created=int(time.time()),
        content=content,
        finish_reason="length" if truncated else "stop",
        tokens=tokens_for(prompt, content),
    )


def openai_usage(tokens: Tokens, *, details: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.completion,
        "total_tokens": tokens.prompt + tokens.completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": tokens.cached}
    return usage


def chat_completion(answer: ChatAnswer, usage: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.refusal is not None:
        message = {"role": "assistant", "content": None, "refusal": answer.refusal}
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
        "usage": dict(usage),
        **extra,
    }


def chat_stream(
    answer: ChatAnswer,
    usage: Mapping[str, Any] | None,
    *,
    usage_chunk: bool,
    **extra: Any,
) -> list[str]:
    """``chat.completion.chunk`` events then ``[DONE]``. Usage rides on the last chunk, or on
    an extra chunk with no choices (``usage_chunk``, OpenAI's ``include_usage``)."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(
            {
                "id": answer.id,
                "object": "chat.completion.chunk",
                "created": answer.created,
                "model": answer.model,
                "choices": [choice],
                **extra,
                **more,
            }
        )

    events = [chunk({"role": "assistant", "content": ""})]
    if answer.refusal is not None:
        events.append(chunk({"refusal": answer.refusal}))
    else:
        events += [chunk({"content": piece}) for piece in pieces(answer.content)]
    if usage is not None and not usage_chunk:
        events.append(chunk({}, answer.finish_reason, usage=dict(usage)))
    else:
        events.append(chunk({}, answer.finish_reason))
    if usage is not None and usage_chunk:
        final = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "choices": [],
            "usage": dict(usage),
            **extra,
        }
        events.append(sse(final))
    events.append(sse("[DONE]"))
    return events
