"""Z.ai GLM emulator: Bearer auth and OpenAI-compatible chat completions (reference section 9).

There is no models endpoint, as on the real platform. Errors use GLM's business codes as
strings, ``{"error": {"code": "1302", "message": ...}}``. Keys starting ``invalid`` get 401
``1000``. Magic words: ``[quota]`` (429 ``1113``, in arrears), ``[ratelimit]`` (429 ``1302``),
``[context]`` (400 ``1261``), ``[refuse]`` (400 ``1301``). JSON mode honours a schema given as
an instruction (``Schema: {...}``); a ``json_schema`` response format is refused, as GLM has
none. Completions on the free flash models are not counted as paid.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import _llm

IDENTIFIER = "glm"
MODELS = {
    "glm-5.3": 200_000,
    "glm-5.2": 1_000_000,
    "glm-5.1": 200_000,
    "glm-5": 200_000,
    "glm-5-turbo": 200_000,
    "glm-5v-turbo": 128_000,
    "glm-4.7": 200_000,
    "glm-4.7-flash": 200_000,
    "glm-4.6": 200_000,
    "glm-4.5": 128_000,
    "glm-4.5-air": 128_000,
    "glm-4.5-flash": 128_000,
}
FREE_MODELS = frozenset({"glm-4.7-flash", "glm-4.5-flash"})
MAGIC_ERRORS = {
    "quota": (429, "1113", "Insufficient balance or no resource package. Please recharge."),
    "ratelimit": (
        429,
        "1302",
        "High concurrency usage of this API, please reduce concurrency or contact customer "
        "service to increase limits.",
    ),
    "context": (400, "1261", "Prompt exceeds max length."),
    "refuse": (
        400,
        "1301",
        "System detected potentially unsafe or sensitive content in input or generation. "
        "Please avoid using prompts that may generate sensitive content. Thank you.",
    ),
}


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """GLM's ``{"error": {"code", "message"}}`` with a string code."""
    if kind == "rate_limit":
        return _error(429, *MAGIC_ERRORS["ratelimit"][1:])
    return _error(status, "500", "Internal Error (sandbox fault).")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _unauthorized(request: Request) -> JSONResponse:
    if not request.headers.get("authorization"):
        return _error(401, "1001", "Authentication parameter not received in Header.")
    return _error(401, "1000", "Authentication Failed.")


def _validate(body: dict[str, Any] | None) -> JSONResponse | None:
    if body is None:
        return _error(400, "1210", "Invalid API parameters, please check the documentation.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _error(400, "1213", "The model parameter was not received properly.")
    if model not in MODELS:
        return _error(400, "1211", "Unknown Model, please check the model code.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "1214", "messages parameter is invalid. Please check the documentation.")
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 1
    ):
        return _error(400, "1214", "temperature parameter is invalid. Must be within [0, 1].")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS):
        return _error(400, "1214", "response_format parameter is invalid.")
    return None


_FORMATS = ("text", "json_object")


def routes(state: SandboxState) -> list[BaseRoute]:
    async def chat_completions(request: Request) -> Response:
        if _llm.bearer_key(request) is None:
            return _unauthorized(request)
        body = await _llm.json_body(request)
        invalid = _validate(body)
        if invalid is not None or body is None:
            return invalid or _error(400, "1210", "Invalid API parameters.")
        kind = _llm.magic(_llm.prompt_text(body["messages"]))
        if kind in MAGIC_ERRORS:
            return _error(*MAGIC_ERRORS[kind])
        if body["model"] not in FREE_MODELS:
            state.count(IDENTIFIER, "POST /chat/completions", paid=True)
        max_tokens = int(body.get("max_tokens") or 4096)
        answer = _llm.chat_answer(body, id_prefix="glm-", max_tokens=max_tokens)
        usage = _llm.openai_usage(answer.tokens)
        request_id = _llm.vendor_id("req-", answer.id)
        if body.get("stream"):
            events = _llm.chat_stream(answer, usage, usage_chunk=False, request_id=request_id)
            return _llm.sse_response(events)
        return JSONResponse(_llm.chat_completion(answer, usage, request_id=request_id))

    return [Route("/chat/completions", chat_completions, methods=["POST"])]
