"""ElevenLabs: synchronous text-to-speech, voices and models (reference section 5).

Auth is the ``xi-api-key`` header. Errors come as ``{"detail": {"status", "message"}}``, or
``{"detail": [{loc, msg, type}]}`` for a 422; the ``detail.status`` code decides the class
(``quota_exceeded`` arrives as a 401 but is an empty balance, not a bad key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    ProviderError,
    QuotaExhausted,
    RateLimited,
)
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.audio.speech import (
    SpeechProvider,
    SpeechRequest,
    SpeechResult,
    Voice,
    parse_speech_request,
)
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    NoInput,
    api_key_field,
    expose,
    require_credential,
    third_party,
)
from arkyra.providers.jobs import LOOKUP_MAX_PAGES, LOOKUP_PAGE_SIZE

DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
#: Short format names a provider-neutral request may use, and the output_format they mean.
SHORT_FORMATS = {"mp3": DEFAULT_OUTPUT_FORMAT, "pcm": "pcm_24000"}
RATE_LIMIT_CODES = frozenset({"too_many_concurrent_requests", "system_busy"})
CREDENTIAL_CODES = frozenset({"invalid_api_key", "missing_permissions", "needs_authorization"})


class ElevenLabsSpeechRequest(SpeechRequest):
    """ElevenLabs options: ``format`` is an ``output_format`` such as ``mp3_44100_128`` (or the
    short ``mp3`` / ``pcm``); ``language`` is sent as its ISO 639-1 part (``en-US`` -> ``en``)."""

    voice_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    format: str | None = Field(default=None, pattern=r"^(mp3|pcm)_\d+(_\d+)?$")
    speed: float | None = Field(default=None, ge=0.7, le=1.2)
    stability: float | None = Field(default=None, ge=0, le=1)
    similarity_boost: float | None = Field(default=None, ge=0, le=1)
    style: float | None = Field(default=None, ge=0, le=1)
    use_speaker_boost: bool | None = None
    seed: int | None = Field(default=None, ge=0, le=4_294_967_295)

    @field_validator("format", mode="before")
    @classmethod
    def _expand_short_format(cls, value: object) -> object:
        if isinstance(value, str):
            return SHORT_FORMATS.get(value.strip().lower(), value.strip().lower())
        return value


class ElevenLabsVoicesInput(ExposedInput):
    """Filters for ``GET /v2/voices``; every page is fetched, nothing is truncated."""

    search: str | None = Field(default=None, max_length=200)
    voice_type: (
        Literal["personal", "community", "default", "workspace", "non-default", "saved"] | None
    ) = None
    category: Literal["premade", "cloned", "generated", "professional"] | None = None
    page_size: int = Field(default=100, ge=1, le=100)


@third_party(
    identifier="elevenlabs",
    title="ElevenLabs",
    description="Lifelike text-to-speech in many languages, with voice cloning.",
    category="audio",
    fields=[api_key_field(help="Profile > API keys; xi-api-key.")],
)
class ElevenLabsProvider(SpeechProvider):
    """Speech from ElevenLabs, stored in the media store."""

    default_base_url = "https://api.elevenlabs.io"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"xi-api-key": require_credential(credentials, "api_key", self.identifier)}

    # -- the contract ------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v1/user``; a key scoped without ``user_read`` is proven by ``GET /v1/models``."""
        try:
            user = await self.get_json("/v1/user", credentials)
        except InvalidCredentials as exc:
            if exc.code != "missing_permissions":
                raise
            await self.get_json("/v1/models", credentials)
            api_key = require_credential(credentials, "api_key", self.identifier)
            return AccountInfo(
                id=self.fingerprint(api_key), name=credentials.get("label") or self.title
            )
        user_id = str(user.get("user_id") or "")
        if not user_id:
            raise ProviderError("GET /v1/user returned no user_id", provider=self.identifier)
        return AccountInfo(id=user_id, name=user.get("first_name") or user_id)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> SpeechResult:
        """Synthesise ``data`` (an :class:`ElevenLabsSpeechRequest`) and store the audio."""
        speech = parse_speech_request(ElevenLabsSpeechRequest, data, self.identifier)
        output_format = speech.format or DEFAULT_OUTPUT_FORMAT
        response = await self.request(
            "POST",
            f"/v1/text-to-speech/{quote(speech.voice_id, safe='')}",
            credentials,
            params={"output_format": output_format},
            json_body=synthesis_body(speech),
            headers={"accept": "audio/mpeg" if output_format.startswith("mp3") else "*/*"},
        )
        media = await self.store_audio(response.content, output_format.split("_", 1)[0])
        return SpeechResult(
            provider=self.identifier,
            voice_id=speech.voice_id,
            media=media,
            characters=len(speech.text),
        )

    finds_spoken = True

    async def find_spoken(
        self, credentials: Mapping[str, str], data: Any, since: float
    ) -> SpeechResult | None:
        """The same text, voice and model synthesised at or after ``since``, from the history.

        ``GET /v1/history`` (newest first, filtered by ``voice_id`` and ``date_after_unix``)
        and ``GET /v1/history/{id}/audio``, both free. The history keeps MP3, so a request for
        another output format is not looked up.
        """
        speech = parse_speech_request(ElevenLabsSpeechRequest, data, self.identifier)
        if not (speech.format or DEFAULT_OUTPUT_FORMAT).startswith("mp3"):
            return None
        params: dict[str, Any] = {
            "voice_id": speech.voice_id,
            "date_after_unix": max(int(since), 0),
            "page_size": LOOKUP_PAGE_SIZE,
        }
        for _ in range(LOOKUP_MAX_PAGES):
            body = await self.get_json("/v1/history", credentials, params=params)
            body = body if isinstance(body, dict) else {}
            for item in body.get("history") or []:
                if isinstance(item, dict) and _same_synthesis(item, speech, since):
                    return await self._history_audio(credentials, str(item["history_item_id"]),
                                                     speech)  # fmt: skip
            last = body.get("last_history_item_id")
            if not body.get("has_more") or not last:
                return None
            params["start_after_history_item_id"] = last
        raise ProviderError(
            f"more than {LOOKUP_MAX_PAGES * LOOKUP_PAGE_SIZE} recent syntheses to search",
            provider=self.identifier,
        )

    async def _history_audio(
        self, credentials: Mapping[str, str], item_id: str, speech: ElevenLabsSpeechRequest
    ) -> SpeechResult:
        path = f"/v1/history/{quote(item_id, safe='')}/audio"
        response = await self.request("GET", path, credentials)
        return SpeechResult(
            provider=self.identifier,
            voice_id=speech.voice_id,
            media=await self.store_audio(response.content, "mp3"),
            characters=len(speech.text),
        )

    # -- exposed functions -------------------------------------------------------------------

    @expose
    async def voices(
        self, credentials: Mapping[str, str], params: ElevenLabsVoicesInput
    ) -> list[dict[str, Any]]:
        """Every voice the key can use, across all pages of ``GET /v2/voices``."""
        query: dict[str, Any] = {"page_size": params.page_size}
        for name in ("search", "voice_type", "category"):
            if getattr(params, name) is not None:
                query[name] = getattr(params, name)

        async def fetch(cursor: dict[str, Any]) -> Any:
            return await self.get_json("/v2/voices", credentials, params={**query, **cursor})

        paginator = CursorPaginator(
            cursor_param="next_page_token",
            next_cursor=lambda body: body.get("next_page_token") if body.get("has_more") else None,
            items=lambda body: body.get("voices") or [],
            max_pages=500,
        )
        return [voice_from(item).model_dump(mode="json") for item in await paginator.collect(fetch)]

    @expose
    async def models(self, credentials: Mapping[str, str], params: NoInput) -> list[dict[str, Any]]:
        """The models of ``GET /v1/models`` (id, name, languages, whether they do TTS)."""
        body = await self.get_json("/v1/models", credentials)
        return [
            {
                "model_id": item.get("model_id"),
                "name": item.get("name"),
                "description": item.get("description"),
                "can_do_text_to_speech": item.get("can_do_text_to_speech"),
                "languages": [lang.get("language_id") for lang in item.get("languages") or []],
                "max_characters": item.get("max_characters_request_subscribed_user"),
            }
            for item in body or []
        ]

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map ``detail.status`` first (quota, rate-limit kind, bad key), then the HTTP status."""
        detail = _detail(response)
        status = response.status_code
        if isinstance(detail, list):
            return BadRequest(
                _validation_message(detail),
                provider=self.identifier,
                status=status,
                code="validation_error",
            )
        code, message = _code_and_message(detail, response)
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": code}
        if code == "quota_exceeded":
            return QuotaExhausted(message, **kw)
        if status == 429 or code in RATE_LIMIT_CODES:
            return RateLimited(message, retry_after=self.retry_after(response), **kw)
        if code in CREDENTIAL_CODES:
            return InvalidCredentials(message, **kw)
        return self.error_from_status(response, message=message, code=code)


def synthesis_body(speech: ElevenLabsSpeechRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text-to-speech/{voice_id}``; unset options are left out."""
    body: dict[str, Any] = {"text": speech.text}
    if speech.model:
        body["model_id"] = speech.model
    if speech.language:
        body["language_code"] = speech.language.split("-", 1)[0].split("_", 1)[0].lower()
    if speech.seed is not None:
        body["seed"] = speech.seed
    settings = {
        name: getattr(speech, name)
        for name in ("stability", "similarity_boost", "style", "use_speaker_boost", "speed")
        if getattr(speech, name) is not None
    }
    if settings:
        body["voice_settings"] = settings
    return body


def _same_synthesis(item: Mapping[str, Any], speech: ElevenLabsSpeechRequest, since: float) -> bool:
    """Whether a history item is ``speech`` (text, voice, and model when one was asked for)."""
    made = item.get("date_unix")
    return (
        bool(item.get("history_item_id"))
        and item.get("text") == speech.text
        and item.get("voice_id") == speech.voice_id
        and (speech.model is None or item.get("model_id") == speech.model)
        and isinstance(made, int | float)
        and made >= since
    )


def voice_from(item: Mapping[str, Any]) -> Voice:
    """A ``/v2/voices`` item in the common voice shape."""
    labels = item.get("labels") or {}
    return Voice(
        id=str(item.get("voice_id")),
        name=str(item.get("name") or item.get("voice_id")),
        category=item.get("category"),
        language=labels.get("language"),
        gender=labels.get("gender"),
        accent=labels.get("accent"),
        description=item.get("description"),
        preview_url=item.get("preview_url"),
        labels=labels,
    )


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _code_and_message(detail: Any, response: httpx.Response) -> tuple[str | None, str]:
    if isinstance(detail, dict):
        code = detail.get("status") if isinstance(detail.get("status"), str) else None
        message = detail.get("message")
        return code, str(message)[:500] if message else (code or f"HTTP {response.status_code}")
    if isinstance(detail, str) and detail:
        return None, detail[:500]
    text = response.text.strip()[:300]
    return None, text or response.reason_phrase or f"HTTP {response.status_code}"


def _validation_message(errors: list[Any]) -> str:
    """``[{loc: ["body","text"], msg: "Field required"}]`` -> ``"body.text: Field required"``."""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        where = ".".join(str(part) for part in error.get("loc") or [])
        msg = str(error.get("msg") or "invalid")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)[:500] or "validation failed"
