"""Mistral emulator: Bearer auth, the model list and chat completions (reference section 11).

The body is validated like Mistral's pydantic models: an unknown field or a missing one is a
422 ``{"detail": [{loc, msg, type}]}``; other errors are ``{"object": "error", message, type,
param, code}``. Keys starting ``invalid`` get a 401. Magic words: ``[quota]`` (429 monthly
spend cap), ``[ratelimit]`` (429 ``rate_limited``), ``[context]`` (400, too large for the
model). The reference documents no refusal shape for Mistral, so ``[refuse]`` is not special.
Usage has no cache details (the reference lists none).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import _llm

IDENTIFIER = "mistral"
MODELS = {
    "mistral-large-latest": 256_000,
    "mistral-medium-latest": 128_000,
    "mistral-small-latest": 128_000,
    "magistral-medium-latest": 128_000,
    "codestral-latest": 256_000,
    "ministral-8b-latest": 128_000,
}
CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop",
        "random_seed", "response_format", "tools", "tool_choice", "presence_penalty",
        "frequency_penalty", "n", "prediction", "parallel_tool_calls", "prompt_mode",
        "safe_prompt",
    }
)  # fmt: skip
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Mistral's ``{"object": "error", ...}`` body."""
    if kind == "rate_limit":
        return _error(429, "Rate limit exceeded", "rate_limited", "1300")
    return _error(status, "Internal server error (sandbox fault)", "internal_server_error", "0")


def _error(status: int, message: str, kind: str, code: str) -> JSONResponse:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    return JSONResponse(body, status_code=status)


def _unprocessable(problems: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": problems}, status_code=422)


def _problem(field: str, message: str, kind: str) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", field], "msg": message, "input": None}


def _validate(body: dict[str, Any] | None) -> JSONResponse | None:
    if body is None:
        return _unprocessable([_problem("", "Input should be a valid dictionary", "dict_type")])
    problems = [
        _problem(name, "Extra inputs are not permitted", "extra_forbidden")
        for name in body
        if name not in CHAT_FIELDS
    ]
    for name in ("model", "messages"):
        if name not in body:
            problems.append(_problem(name, "Field required", "missing"))
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in RESPONSE_FORMATS:
        problems.append(_problem("response_format", "Input should be 'text', 'json_object' "
                                 "or 'json_schema'", "enum"))  # fmt: skip
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec or "name" not in spec:
            problems.append(_problem("response_format", "Field required", "missing"))
    if problems:
        return _unprocessable(problems)
    if body["model"] not in MODELS:
        return _error(400, f"Invalid model: {body['model']}", "invalid_model", "1500")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return _unprocessable(
            [_problem("messages", "List should have at least 1 item", "too_short")]
        )
    return None


def _magic_error(kind: str | None, model: str) -> JSONResponse | None:
    if kind == "quota":
        return _error(
            429,
            "Monthly spend limit reached for this workspace; raise it in the admin console.",
            "rate_limited",
            "1300",
        )
    if kind == "ratelimit":
        return _error(429, "Rate limit exceeded", "rate_limited", "1300")
    if kind == "context":
        window = MODELS[model]
        return _error(
            400,
            f"Prompt contains {window + 1000} tokens and 0 draft tokens, too large for model "
            f"with {window} maximum context length",
            "invalid_request_error",
            "3051",
        )
    return None


def _model_card(model: str, context: int) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": 1767225600,
        "owned_by": "mistralai",
        "name": model,
        "description": f"{model} (sandbox)",
        "max_context_length": context,
        "aliases": [],
        "deprecation": None,
        "capabilities": {
            "completion_chat": True,
            "completion_fim": model.startswith("codestral"),
            "function_calling": True,
            "fine_tuning": False,
            "vision": model.startswith("mistral-"),
        },
        "type": "base",
    }


def routes(state: SandboxState) -> list[BaseRoute]:
    async def list_models(request: Request) -> Response:
        if _llm.bearer_key(request) is None:
            return JSONResponse({"message": "Unauthorized", "request_id": "sbx"}, status_code=401)
        data = [_model_card(model, context) for model, context in MODELS.items()]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        if _llm.bearer_key(request) is None:
            return JSONResponse({"message": "Unauthorized", "request_id": "sbx"}, status_code=401)
        body = await _llm.json_body(request)
        invalid = _validate(body)
        if invalid is not None or body is None:
            return invalid or _unprocessable([])
        failure = _magic_error(_llm.magic(_llm.prompt_text(body["messages"])), body["model"])
        if failure is not None:
            return failure
        state.count(IDENTIFIER, "POST /chat/completions", paid=True)
        max_tokens = int(body.get("max_tokens") or 4096)
        answer = _llm.chat_answer(body, id_prefix="", max_tokens=max_tokens)
        usage = _llm.openai_usage(answer.tokens, details=False)
        if body.get("stream"):
            return _llm.sse_response(_llm.chat_stream(answer, usage, usage_chunk=False))
        return JSONResponse(_llm.chat_completion(answer, usage))

    return [
        Route("/models", list_models, methods=["GET"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
    ]
