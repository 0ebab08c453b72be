"""Anthropic emulator: the Messages API and the model list (reference section 10).

Every request needs ``x-api-key`` and ``anthropic-version``; every response carries
``anthropic-organization-id`` and ``request-id``. Errors are ``{"type": "error", "error":
{type, message}, "request_id"}``. The 5.5 Sonnet/Opus models refuse sampling parameters,
forced tool choice and disabled thinking with a 400, as the reference warns. A ``system`` role
inside ``messages`` is refused, as the real API does.

Magic words: ``[quota]`` (400 "credit balance is too low", the shape the API really sends),
``[ratelimit]`` (429 ``rate_limit_error`` with ``retry-after``), ``[context]`` (400 "prompt is
too long"), ``[refuse]`` (``stop_reason: refusal``), ``[overloaded]`` (529
``overloaded_error``), ``[stream-error]`` (an ``error`` event after the stream has started).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import _llm

IDENTIFIER = "claude"
MODELS = {
    "claude-opus-5-5": ("Claude Opus 5.5", 64_000),
    "claude-sonnet-5-5": ("Claude Sonnet 5.5", 64_000),
    "claude-haiku-5-5": ("Claude Haiku 5.5", 64_000),
    "claude-haiku-4-5": ("Claude Haiku 4.5", 64_000),
}
CONTEXT_WINDOW = 200_000
STRICT_MODELS = frozenset({"claude-opus-5-5", "claude-sonnet-5-5"})
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
ERROR_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
RETRY_AFTER = "1"


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Anthropic's ``{"type": "error", "error": {type, message}}``."""
    if kind == "rate_limit":
        return _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit.")
    return _error(status, ERROR_STATUS_TYPES.get(status, "api_error"), "Sandbox fault.")


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_sbx"}
    return JSONResponse(body, status_code=status, headers=headers)


def _invalid(message: str) -> JSONResponse:
    return _error(400, "invalid_request_error", message)


def _organization(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _authenticate(request: Request) -> tuple[str | None, JSONResponse | None]:
    """The accepted key, or the error the real API gives."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        return None, _error(401, "authentication_error", "x-api-key header is required")
    if key.startswith(_llm.REJECTED_KEY_PREFIX):
        return None, _error(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return None, _invalid("anthropic-version: header is required")
    return key, None


def _headers(key: str) -> dict[str, str]:
    return {"anthropic-organization-id": _organization(key), "request-id": "req_sbx"}


def _validate(body: dict[str, Any] | None) -> JSONResponse | None:
    """The 400/404 the real API would give this body, if any."""
    if body is None:
        return _invalid("The request body is not valid JSON.")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return _invalid(f"{name}: Field required")
    if body["model"] not in MODELS:
        return _error(404, "not_found_error", f"model: {body['model']}")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return _invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return _invalid(
                f'messages.{index}.role: Unexpected role "{role}". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.'
            )
    return _validate_model_options(body) or _validate_structured(body)


def _validate_model_options(body: dict[str, Any]) -> JSONResponse | None:
    if body["model"] not in STRICT_MODELS:
        return None
    for name in SAMPLING_PARAMS:
        if name in body:
            return _invalid(f"{name}: is not supported with this model.")
    choice = body.get("tool_choice") or {}
    if isinstance(choice, dict) and choice.get("type") in ("tool", "any"):
        return _invalid("tool_choice: forced tool use is not supported with this model.")
    thinking = body.get("thinking") or {}
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        return _invalid("thinking.type: 'disabled' is not supported with this model.")
    return None


def _validate_structured(body: dict[str, Any]) -> JSONResponse | None:
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None and (
        not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or "schema" not in fmt
    ):
        return _invalid("output_config.format: expected {type: 'json_schema', schema}")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if choice.get("name") not in names:
            return _invalid(f"tool_choice.name: no tool named {choice.get('name')!r}")
    return None


def _magic_error(kind: str | None) -> JSONResponse | None:
    if kind == "quota":
        return _invalid(
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits."
        )
    if kind == "ratelimit":
        return _error(
            429,
            "rate_limit_error",
            "This request would exceed your organization's rate limit of 50 requests per minute.",
            headers={"retry-after": RETRY_AFTER},
        )
    if kind == "context":
        too_many = CONTEXT_WINDOW + 12345
        return _invalid(f"prompt is too long: {too_many} tokens > {CONTEXT_WINDOW} maximum")
    if kind == "overloaded":
        return _error(529, "overloaded_error", "Overloaded")
    return None


def _answer(body: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """The message: a forced tool call, a structured or JSON answer, or an echo."""
    messages = body["messages"]
    system = _llm.text_of(body.get("system"))
    prompt = _llm.prompt_text(messages, system)
    choice = body.get("tool_choice") or {}
    fmt = (body.get("output_config") or {}).get("format")
    stop_reason = "end_turn"
    if kind == "refuse":
        content: list[dict[str, Any]] = []
        stop_reason = "refusal"
    elif isinstance(choice, dict) and choice.get("type") == "tool":
        tool = next(t for t in body["tools"] if t.get("name") == choice["name"])
        tool_input = _llm.placeholder(tool.get("input_schema"))
        tool_id = _llm.vendor_id("toolu_", prompt)
        content = [{"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input}]
        stop_reason = "tool_use"
    elif fmt is not None:
        content = [{"type": "text", "text": _llm.json_answer(messages, fmt["schema"])}]
    elif "json" in system.lower():
        content = [{"type": "text", "text": _llm.json_answer(messages)}]
    else:
        text, truncated = _llm.cut(_llm.echo(messages), int(body["max_tokens"]))
        content = [{"type": "text", "text": text}]
        stop_reason = "max_tokens" if truncated else "end_turn"
    answer_text = "".join(str(b.get("text") or b.get("input") or "") for b in content)
    tokens = _llm.tokens_for(prompt, answer_text)
    return {
        "id": _llm.vendor_id("msg_", body["model"], prompt),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens.prompt - tokens.cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": tokens.cached,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": tokens.completion,
            "service_tier": "standard",
        },
    }


def _stream_events(message: dict[str, Any], fail_midway: bool) -> list[str]:
    """The Messages SSE sequence for a finished ``message``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [_llm.sse({"type": "message_start", "message": start}, "message_start")]
    if fail_midway:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return [*events, _llm.sse(error, "error")]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            text = json.dumps(block["input"], separators=(",", ":"))
            delta_kind, field = "input_json_delta", "partial_json"
        else:
            opening = {"type": "text", "text": ""}
            text, delta_kind, field = block["text"], "text_delta", "text"
        events.append(
            _llm.sse(
                {"type": "content_block_start", "index": index, "content_block": opening},
                "content_block_start",
            )
        )
        events.append(_llm.sse({"type": "ping"}, "ping"))
        for piece in _llm.pieces(text):
            delta = {"type": delta_kind, field: piece}
            events.append(
                _llm.sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        events.append(
            _llm.sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        )
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    final_usage = {"output_tokens": usage["output_tokens"]}
    events.append(
        _llm.sse({"type": "message_delta", "delta": delta, "usage": final_usage}, "message_delta")
    )
    events.append(_llm.sse({"type": "message_stop"}, "message_stop"))
    return events


def _models_page(request: Request) -> dict[str, Any] | JSONResponse:
    ids = list(MODELS)
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        return _invalid("limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        return _invalid("limit: Input should be between 1 and 1000")
    start = 0
    if query.get("after_id") in ids:
        start = ids.index(query["after_id"]) + 1
    page = ids[start : start + limit]
    data = [
        {
            "type": "model",
            "id": model,
            "display_name": MODELS[model][0],
            "created_at": "2026-10-07T00:00:00Z",
            "max_input_tokens": CONTEXT_WINDOW,
            "max_tokens": MODELS[model][1],
        }
        for model in page
    ]
    return {
        "data": data,
        "has_more": start + limit < len(ids),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def routes(state: SandboxState) -> list[BaseRoute]:
    async def list_models(request: Request) -> Response:
        key, refused = _authenticate(request)
        if key is None:
            return refused or _error(401, "authentication_error", "invalid x-api-key")
        page = _models_page(request)
        if isinstance(page, JSONResponse):
            return page
        return JSONResponse(page, headers=_headers(key))

    async def messages(request: Request) -> Response:
        key, refused = _authenticate(request)
        if key is None:
            return refused or _error(401, "authentication_error", "invalid x-api-key")
        body = await _llm.json_body(request)
        invalid = _validate(body)
        if invalid is not None or body is None:
            return invalid or _invalid("The request body is not valid JSON.")
        kind = _llm.magic(_llm.prompt_text(body["messages"], body.get("system")))
        failure = _magic_error(kind)
        if failure is not None:
            return failure
        state.count(IDENTIFIER, "POST /v1/messages", paid=True)
        message = _answer(body, kind)
        if body.get("stream"):
            response = _llm.sse_response(_stream_events(message, kind == "stream_error"))
            response.headers.update(_headers(key))
            return response
        return JSONResponse(message, headers=_headers(key))

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/messages", messages, methods=["POST"]),
    ]
