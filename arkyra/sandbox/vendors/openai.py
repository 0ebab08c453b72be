"""OpenAI emulator: Bearer auth, the model list, chat completions (JSON, JSON schema, SSE with
``include_usage``) and image generation. Follows reference section 8.

Served at both ``/models`` and ``/v1/models`` (and the same for the other routes), so clients
built with either base URL style work. Keys starting ``invalid`` get the 401 ``invalid_api_key``
body. Magic words in the prompt: ``[quota]`` (429 ``insufficient_quota``), ``[ratelimit]`` (429
``rate_limit_exceeded`` with ``retry-after-ms``), ``[context]`` (400
``context_length_exceeded``), ``[refuse]`` (a ``refusal`` answer; a policy 400 for images).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import _llm

IDENTIFIER = "openai"
CHAT_MODELS = {"gpt-6-sol": 1_050_000, "gpt-6.1-terra": 1_050_000, "gpt-6-luna": 400_000}
IMAGE_MODELS = ("gpt-image-1.5", "gpt-image-1", "dall-e-3")
RETRY_AFTER_MS = "20"
#: A 1x1 transparent PNG.
PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """OpenAI's ``{"error": {message, type, param, code}}``."""
    if kind == "rate_limit":
        return _rate_limited()
    return _error(
        status,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _rate_limited() -> JSONResponse:
    return _error(
        429,
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
        "requests",
        "rate_limit_exceeded",
        headers={"retry-after-ms": RETRY_AFTER_MS, "retry-after": "1"},
    )


def _unauthorized(request: Request) -> JSONResponse:
    header = request.headers.get("authorization", "")
    if not header:
        return _error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        )
    return _error(
        401,
        f"Incorrect API key provided: {_llm.masked(header[7:].strip())}. You can find your "
        "API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


def _identity_headers(key: str) -> dict[str, str]:
    organization = "org-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return {
        "openai-organization": organization,
        "x-request-id": _llm.vendor_id("req_", key),
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
    }


def _magic_error(kind: str | None, model: str) -> JSONResponse | None:
    if kind == "quota":
        return _error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        )
    if kind == "ratelimit":
        return _rate_limited()
    if kind == "context":
        window = CHAT_MODELS.get(model, 400_000)
        return _error(
            400,
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {window + 1234} tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
    return None


def _invalid(message: str, param: str | None, code: str | None = None) -> JSONResponse:
    return _error(400, message, "invalid_request_error", code, param)


def _validate_chat(body: dict[str, Any] | None) -> JSONResponse | None:
    """The 400/404 a real request with this body would get, if any."""
    if body is None:
        return _invalid("We could not parse the JSON body of your request.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _invalid("you must provide a model parameter", "model")
    if model not in CHAT_MODELS:
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("[] is too short - 'messages'", "messages", "empty_array")
    if "max_tokens" in body:
        return _invalid(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    return _validate_response_format(body.get("response_format"), messages)


def _validate_response_format(fmt: Any, messages: list[Any]) -> JSONResponse | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object" and "json" not in _llm.prompt_text(messages).lower():
        return _invalid(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            "messages",
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not spec.get("name") or "schema" not in spec:
            return _invalid(
                "Missing required parameter: 'response_format.json_schema'.",
                "response_format.json_schema",
                "missing_required_parameter",
            )
    elif kind not in ("text", "json_object"):
        return _invalid(f"Invalid value: '{kind}'.", "response_format.type", "invalid_value")
    return None


def routes(state: SandboxState) -> list[BaseRoute]:
    async def list_models(request: Request) -> Response:
        key = _llm.bearer_key(request)
        if key is None:
            return _unauthorized(request)
        data = [
            {"id": model, "object": "model", "created": 1767225600, "owned_by": "system"}
            for model in (*CHAT_MODELS, *IMAGE_MODELS)
        ]
        return JSONResponse({"object": "list", "data": data}, headers=_identity_headers(key))

    async def chat_completions(request: Request) -> Response:
        key = _llm.bearer_key(request)
        if key is None:
            return _unauthorized(request)
        body = await _llm.json_body(request)
        invalid = _validate_chat(body)
        if invalid is not None or body is None:
            return invalid or _invalid("We could not parse the JSON body of your request.", None)
        kind = _llm.magic(_llm.prompt_text(body["messages"]))
        failure = _magic_error(kind, body["model"])
        if failure is not None:
            return failure
        state.count(IDENTIFIER, "POST /chat/completions", paid=True)
        max_tokens = int(body.get("max_completion_tokens") or 4096)
        answer = _llm.chat_answer(body, id_prefix="chatcmpl-", max_tokens=max_tokens)
        if kind == "refuse":
            answer = _refused(answer)
        usage = _usage(answer.tokens)
        extra = {"service_tier": "default", "system_fingerprint": "fp_sandbox"}
        headers = _identity_headers(key)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include = bool(options.get("include_usage")) if isinstance(options, dict) else False
            events = _llm.chat_stream(answer, usage if include else None, usage_chunk=True, **extra)
            response = _llm.sse_response(events)
            response.headers.update(headers)
            return response
        return JSONResponse(_llm.chat_completion(answer, usage, **extra), headers=headers)

    async def generate_images(request: Request) -> Response:
        key = _llm.bearer_key(request)
        if key is None:
            return _unauthorized(request)
        body = await _llm.json_body(request)
        if body is None or not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return _invalid("Missing required parameter: 'prompt'.", "prompt")
        model = body.get("model") or "dall-e-2"
        if model not in IMAGE_MODELS:
            return _invalid(f"Invalid value for 'model' = {model}.", "model", "invalid_value")
        kind = _llm.magic(body["prompt"])
        if kind == "refuse":
            return _invalid(
                "Your request was rejected as a result of our safety system.",
                None,
                "content_policy_violation",
            )
        if kind == "quota":
            return _invalid(
                "Billing hard limit has been reached", None, "billing_hard_limit_reached"
            )
        if kind == "ratelimit":
            return _rate_limited()
        state.count(IDENTIFIER, "POST /images/generations", paid=True)
        return JSONResponse(_images(body, model), headers=_identity_headers(key))

    return [
        Route(prefix + path, handler, methods=[method])
        for prefix in ("", "/v1")
        for path, handler, method in (
            ("/models", list_models, "GET"),
            ("/chat/completions", chat_completions, "POST"),
            ("/images/generations", generate_images, "POST"),
        )
    ]


def _refused(answer: _llm.ChatAnswer) -> _llm.ChatAnswer:
    return _llm.ChatAnswer(
        id=answer.id,
        model=answer.model,
        created=answer.created,
        content="",
        finish_reason="stop",
        tokens=answer.tokens,
        refusal="I'm sorry, but I can't help with that request.",
    )


def _usage(tokens: _llm.Tokens) -> dict[str, Any]:
    usage = _llm.openai_usage(tokens)
    usage["prompt_tokens_details"]["audio_tokens"] = 0
    usage["completion_tokens_details"] = {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
    return usage


def _images(body: dict[str, Any], model: str) -> dict[str, Any]:
    count = max(1, min(int(body.get("n") or 1), 4))
    as_url = model == "dall-e-3" and body.get("response_format") == "url"
    data = []
    for index in range(count):
        if as_url:
            image_id = _llm.vendor_id("img-", body["prompt"], index)
            item = {"url": f"https://sandbox.openai.example/images/{image_id}.png"}
        else:
            item = {"b64_json": PNG_1X1}
        if model == "dall-e-3":
            item["revised_prompt"] = body["prompt"]
        data.append(item)
    prompt_tokens = _llm.count_tokens(body["prompt"])
    usage = {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
        "output_tokens": 272 * count,
        "total_tokens": prompt_tokens + 272 * count,
    }
    return {"created": 1767225600, "data": data, "usage": usage}
