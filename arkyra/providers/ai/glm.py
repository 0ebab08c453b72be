"""Zhipu / Z.ai GLM: OpenAI-compatible chat completions (reference section 9).

The default base is the international ``https://api.z.ai/api/paas/v4`` (USD). The China platform
(:data:`GLM_CHINA_BASE_URL`, CNY) is selected by setting ``ARKYRA_GLM_BASE_URL`` to it. Auth is
the key itself as ``Authorization: Bearer`` (the SDK default; the legacy JWT is not needed).

Errors carry a business code as a string, ``{"error": {"code": "1302", "message": ...}}``, and
the code decides: 1113 is an empty balance (not a rate limit, whatever the 429 says), 1302 a
concurrency limit worth a retry. There is no models endpoint, so the check is a one-token
completion on the free ``glm-4.7-flash``.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from arkyra.providers.ai._base import Capability, ModelInfo
from arkyra.providers.ai._openai_compat import OpenAICompatProvider
from arkyra.providers.base import api_key_field, third_party

GLM_CHINA_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
HEALTH_MODEL = "glm-4.7-flash"

#: Business codes (docs.z.ai api-code) -> class; ranges are handled in :func:`glm_error_class`.
CREDENTIAL_CODES = frozenset({1000, 1001, 1002, 1003, 1004, 1110, 1111, 1112, 1121, 1220})
QUOTA_CODES = frozenset({1113, 1304, 1308, 1309, 1310, 1313})
RATE_LIMIT_CODES = frozenset({1302, 1303, 1305, 1312})
TRANSIENT_CODES = frozenset({500, 1120, 1230, 1234})
POLICY_CODES = frozenset({1300, 1301})
CONTEXT_CODES = frozenset({1261})

_TEXT: frozenset[Capability] = frozenset({"json", "streaming", "tools"})
_VISION: frozenset[Capability] = _TEXT | {"images"}


def _model(model_id: str, context: int, output: int, **extra: Any) -> ModelInfo:
    extra.setdefault("capabilities", _TEXT)
    return ModelInfo(id=model_id, context_window=context, max_output_tokens=output, **extra)


def glm_error_class(code: int | None, status: int | None) -> type[ProviderError]:
    """The taxonomy class for a business ``code`` (or the HTTP status when there is none)."""
    if code is not None:
        for codes, cls in (
            (CREDENTIAL_CODES, InvalidCredentials),
            (QUOTA_CODES, QuotaExhausted),
            (RATE_LIMIT_CODES, RateLimited),
            (TRANSIENT_CODES, Transient),
            (POLICY_CODES, ContentRejected),
            (CONTEXT_CODES, ContextTooLong),
        ):
            if code in codes:
                return cls
        if 1000 <= code <= 1199:  # authentication and account
            return InvalidCredentials
        if 1200 <= code <= 1299:
            return BadRequest
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return InvalidCredentials
    if status is None or status >= 500 or status in (408, 409):
        return Transient
    return BadRequest


@third_party(
    identifier="glm",
    title="Z.ai GLM",
    description=(
        "GLM chat models from Zhipu / Z.ai (international platform; set ARKYRA_GLM_BASE_URL to "
        f"{GLM_CHINA_BASE_URL} for the China platform)."
    ),
    category="ai",
    fields=[api_key_field(help="z.ai > API keys (or open.bigmodel.cn for the China platform).")],
)
class GLMProvider(OpenAICompatProvider):
    """Chat completions from GLM; structured output is JSON mode plus the schema as an
    instruction (GLM has no ``json_schema`` response format)."""

    default_base_url = "https://api.z.ai/api/paas/v4"
    default_model = "glm-4.7"
    native_json_schema = False
    max_temperature = 1.0
    #: Context windows except glm-5.2's 1M are not in the reference (UNCONFIRMED).
    models = {
        "glm-5.3": _model("glm-5.3", 200_000, 128_000),
        "glm-5.2": _model("glm-5.2", 1_000_000, 128_000),
        "glm-5.1": _model("glm-5.1", 200_000, 128_000),
        "glm-5": _model("glm-5", 200_000, 128_000),
        "glm-5-turbo": _model("glm-5-turbo", 200_000, 128_000),
        "glm-5v-turbo": _model("glm-5v-turbo", 128_000, 32_000, capabilities=_VISION),
        "glm-4.7": _model("glm-4.7", 200_000, 128_000),
        "glm-4.7-flash": _model("glm-4.7-flash", 200_000, 128_000, free=True),
        "glm-4.6": _model("glm-4.6", 200_000, 128_000),
        "glm-4.5": _model("glm-4.5", 128_000, 96_000),
        "glm-4.5-air": _model("glm-4.5-air", 128_000, 96_000),
        "glm-4.5-flash": _model("glm-4.5-flash", 128_000, 96_000, free=True),
    }

    async def probe(self, credentials: Mapping[str, str]) -> httpx.Response:
        """A one-token completion on the free flash model (GLM has no models endpoint)."""
        body = {
            "model": HEALTH_MODEL,
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
        }
        return await self.request("POST", self.chat_path, credentials, json_body=body)

    def check_finish(self, finish_reason: str | None, refusal: str | None) -> None:
        """GLM ends a broken inference with ``network_error``: worth another try."""
        if finish_reason == "network_error":
            raise Transient("the model stopped with a network error", provider=self.identifier)
        super().check_finish(finish_reason, refusal)

    def error_for(self, status: int | None, body: Any, headers: httpx.Headers) -> ProviderError:
        """The business code first (1113 balance, 1302 concurrency, ...), then the status."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        raw_code = str(error.get("code") or "").strip()
        code = int(raw_code) if raw_code.isdigit() else None
        message = str(error.get("message") or (body if isinstance(body, str) else "") or "error")
        cls = glm_error_class(code, status)
        kw: dict[str, Any] = {
            "provider": self.identifier,
            "status": status,
            "code": raw_code or None,
        }
        if cls is RateLimited:
            return RateLimited(message, retry_after=parse_retry_after(headers), **kw)
        return cls(message, **kw)
