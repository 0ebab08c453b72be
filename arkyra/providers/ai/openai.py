"""OpenAI: chat completions, the model list as a free check, and image generation (section 8).

Auth is ``Authorization: Bearer``. Errors come as ``{"error": {message, type, param, code}}``;
the code decides before the status: a 429 ``insufficient_quota`` is an empty balance (never
retried), a 429 ``rate_limit_exceeded`` a wait (``retry-after-ms``, then ``retry-after``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import Field

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
from arkyra.providers.ai._base import ModelInfo
from arkyra.providers.ai._openai_compat import OpenAICompatProvider
from arkyra.providers.base import ExposedInput, api_key_field, expose, third_party

QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
POLICY_CODES = frozenset({"content_policy_violation", "content_filter", "moderation_blocked"})
CREDENTIAL_CODES = frozenset({"invalid_api_key", "invalid_organization", "account_deactivated"})
SERVER_TYPES = frozenset({"server_error", "api_error"})

_CHAT = frozenset({"json", "structured_output", "images", "streaming", "tools"})


class GenerateImageInput(ExposedInput):
    """``POST /images/generations``; gpt-image models return base64, dall-e-3 may return a URL."""

    prompt: str = Field(min_length=1, max_length=32_000)
    model: Literal["gpt-image-1.5", "gpt-image-1", "dall-e-3"] = "gpt-image-1"
    n: int = Field(default=1, ge=1, le=4)
    size: str = Field(default="1024x1024", pattern=r"^(auto|\d{3,4}x\d{3,4})$")
    quality: Literal["auto", "low", "medium", "high", "standard", "hd"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    response_format: Literal["b64_json", "url"] | None = Field(
        default=None, description="dall-e-3 only; gpt-image models always return b64_json."
    )


@third_party(
    identifier="openai",
    title="OpenAI",
    description="GPT chat models with JSON and structured output, and image generation.",
    category="ai",
    fields=[api_key_field(help="platform.openai.com > API keys (sk-...).")],
)
class OpenAIProvider(OpenAICompatProvider):
    """Chat completions and images from OpenAI."""

    default_base_url = "https://api.openai.com/v1"
    default_model = "gpt-6-luna"
    max_tokens_field = "max_completion_tokens"
    stream_usage_option = True
    #: ``GET /models`` is the free check; this header names the account.
    account_header = "openai-organization"
    #: Context windows are not in the reference (UNCONFIRMED); prices double above 272K input.
    models = {
        "gpt-6-sol": ModelInfo(
            id="gpt-6-sol", context_window=1_050_000, max_output_tokens=128_000, capabilities=_CHAT
        ),
        "gpt-6.1-terra": ModelInfo(
            id="gpt-6.1-terra",
            context_window=1_050_000,
            max_output_tokens=128_000,
            capabilities=_CHAT,
        ),
        "gpt-6-luna": ModelInfo(
            id="gpt-6-luna", context_window=400_000, max_output_tokens=128_000, capabilities=_CHAT
        ),
    }

    @expose
    async def generate_image(
        self, credentials: Mapping[str, str], params: GenerateImageInput
    ) -> dict[str, Any]:
        """Generate images; each item has ``b64_json`` or ``url`` and maybe ``revised_prompt``."""
        body = params.model_dump(exclude_none=True)
        if not params.model.startswith("dall-e"):
            body.pop("response_format", None)
        answer = await self.post_json("/images/generations", credentials, body)
        images = [
            {key: item[key] for key in ("b64_json", "url", "revised_prompt") if item.get(key)}
            for item in answer.get("data") or []
        ]
        if not images:
            raise Transient("answered without images", provider=self.identifier)
        return {
            "model": params.model,
            "created": answer.get("created"),
            "images": images,
            "usage": answer.get("usage"),
        }

    def error_for(self, status: int | None, body: Any, headers: httpx.Headers) -> ProviderError:
        """The error's ``code``/``type`` first, then the status."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "") or None
        kind = str(error.get("type") or "")
        message = str(error.get("message") or (body if isinstance(body, str) else "") or "error")
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": code}
        if code in QUOTA_CODES or kind == "insufficient_quota":
            return QuotaExhausted(message, **kw)
        if code in CONTEXT_CODES:
            return ContextTooLong(message, **kw)
        if code in POLICY_CODES:
            return ContentRejected(message, **kw)
        if status == 429 or code == "rate_limit_exceeded":
            return RateLimited(message, retry_after=parse_retry_after(headers), **kw)
        if status in (401, 403) or code in CREDENTIAL_CODES:
            return InvalidCredentials(message, **kw)
        if status is None or status >= 500 or status in (408, 409) or kind in SERVER_TYPES:
            return Transient(message, **kw)
        return BadRequest(message, **kw)
