"""Mistral: OpenAI-compatible chat completions with JSON schema output (reference section 11).

Auth is ``Authorization: Bearer``. Errors come in three shapes: a 422
``{"detail": [{loc, msg, type}]}`` (our body was wrong), ``{"object": "error", message, type,
code}`` and an older flat ``{"message": ...}``. A 429 is a rate limit unless its message says a
spend cap was reached, which is an empty budget.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from arkyra.errors import (
    BadRequest,
    ContextTooLong,
    InvalidCredentials,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http.retry import parse_retry_after
from arkyra.providers.ai._base import Capability, ModelInfo
from arkyra.providers.ai._openai_compat import OpenAICompatProvider
from arkyra.providers.base import api_key_field, third_party

SPEND_CAP = re.compile(r"\b(spend(ing)?|budget|monthly|billing|payment|credits?|quota)\b", re.I)
CONTEXT_TOO_LONG = re.compile(
    r"too large for model|context length|maximum context|prompt is too long|too many tokens", re.I
)

_CHAT: frozenset[Capability] = frozenset({"json", "structured_output", "streaming", "tools"})


def _model(model_id: str, context: int, images: bool = False) -> ModelInfo:
    caps = _CHAT | {"images"} if images else _CHAT
    return ModelInfo(
        id=model_id, context_window=context, max_output_tokens=32_768, capabilities=caps
    )


def validation_message(detail: list[Any]) -> str:
    """``body.messages.0.content: Field required; ...`` from a 422 ``detail`` list."""
    parts = []
    for item in detail[:10]:
        if not isinstance(item, dict):
            continue
        where = ".".join(str(p) for p in item.get("loc") or [])
        parts.append(f"{where}: {item.get('msg') or 'invalid'}" if where else str(item.get("msg")))
    return "; ".join(parts) or "the request was invalid"


@third_party(
    identifier="mistral",
    title="Mistral AI",
    description="Mistral chat models with JSON mode and JSON schema output.",
    category="ai",
    fields=[api_key_field(help="console.mistral.ai > API keys.")],
)
class MistralProvider(OpenAICompatProvider):
    """Chat completions from Mistral."""

    default_base_url = "https://api.mistral.ai/v1"
    default_model = "mistral-small-latest"
    #: Context windows are not in the reference (UNCONFIRMED).
    models = {
        "mistral-large-latest": _model("mistral-large-latest", 256_000, images=True),
        "mistral-medium-latest": _model("mistral-medium-latest", 128_000, images=True),
        "mistral-small-latest": _model("mistral-small-latest", 128_000, images=True),
        "magistral-medium-latest": _model("magistral-medium-latest", 128_000),
        "codestral-latest": _model("codestral-latest", 256_000),
        "ministral-8b-latest": _model("ministral-8b-latest", 128_000),
    }

    def error_for(self, status: int | None, body: Any, headers: httpx.Headers) -> ProviderError:
        """422 validation detail, then ``type``/``code``/message, then the status."""
        kw: dict[str, Any] = {"provider": self.identifier, "status": status}
        if isinstance(body, dict) and isinstance(body.get("detail"), list):
            return BadRequest(validation_message(body["detail"]), code="validation_error", **kw)
        error = body if isinstance(body, dict) else {}
        if isinstance(error.get("error"), dict):  # the OpenAI-style shape, seen mid-stream
            error = error["error"]
        kind = str(error.get("type") or "")
        code = str(error.get("code") or "") or kind or None
        message = str(error.get("message") or (body if isinstance(body, str) else "") or "error")
        kw["code"] = code
        if status == 429 or kind == "rate_limited":
            if SPEND_CAP.search(message):
                return QuotaExhausted(message, **kw)
            return RateLimited(message, retry_after=parse_retry_after(headers), **kw)
        if status in (401, 403):
            return InvalidCredentials(message, **kw)
        if status == 402:
            return QuotaExhausted(message, **kw)
        if CONTEXT_TOO_LONG.search(message):
            return ContextTooLong(message, **kw)
        if status is None or status >= 500 or status in (408, 409):
            return Transient(message, **kw)
        return BadRequest(message, **kw)
