"""Murf: synchronous text-to-speech and voices (reference section 6).

Auth is the ``api-key`` header. ``GET /v1/auth/token`` proves a key without spending
characters; Murf has no account endpoint, so the account is a fingerprint of the key. We ask
for the audio inline (``encodeAsBase64``) and fall back to downloading ``audioFile``. The error
body shape is not documented, so the message is read defensively (JSON fields or raw text).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from arkyra.errors import ProviderError, Transient
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
    api_key_field,
    expose,
    require_credential,
    third_party,
)

MurfFormat = Literal["MP3", "WAV", "FLAC", "PCM", "OGG"]


class MurfSpeechRequest(SpeechRequest):
    """Murf options. ``speed`` (1.0 = normal) becomes ``rate`` (-50..50) unless ``rate`` is set;
    ``language`` is sent as ``locale`` and ``model`` as ``modelVersion``."""

    format: MurfFormat | None = None
    sample_rate: Literal[8000, 24000, 44100, 48000] | None = None
    channel_type: Literal["MONO", "STEREO"] | None = None
    style: str | None = Field(default=None, max_length=100)
    rate: int | None = Field(default=None, ge=-50, le=50)
    pitch: int | None = Field(default=None, ge=-50, le=50)
    speed: float | None = Field(default=None, ge=0.5, le=1.5)

    @field_validator("format", "channel_type", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class MurfVoicesInput(ExposedInput):
    """Filters applied to the full ``GET /v1/speech/voices`` list (Murf filters nothing)."""

    locale: str | None = Field(default=None, max_length=20, description="e.g. en-US")
    gender: str | None = Field(default=None, max_length=20, description="Male or Female")
    model: str | None = Field(default=None, max_length=40, description="Murf's model query")


@third_party(
    identifier="murf",
    title="Murf",
    description="Studio-quality AI voice-overs in 20+ languages.",
    category="audio",
    fields=[api_key_field(help="Murf API dashboard; sent as the api-key header.")],
)
class MurfProvider(SpeechProvider):
    """Speech from Murf, stored in the media store."""

    default_base_url = "https://api.murf.ai"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"api-key": require_credential(credentials, "api_key", self.identifier)}

    # -- the contract ------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v1/auth/token``: cheap, free; the token itself is discarded."""
        body = await self.get_json("/v1/auth/token", credentials)
        if not isinstance(body, dict) or not body.get("token"):
            raise Transient("GET /v1/auth/token returned no token", provider=self.identifier)
        api_key = require_credential(credentials, "api_key", self.identifier)
        return AccountInfo(
            id=self.fingerprint(api_key), name=credentials.get("label") or self.title
        )

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> SpeechResult:
        """Synthesise ``data`` (a :class:`MurfSpeechRequest`) and store the audio."""
        speech = parse_speech_request(MurfSpeechRequest, data, self.identifier)
        body = await self.post_json("/v1/speech/generate", credentials, generate_body(speech))
        audio_format = (speech.format or "MP3").lower()
        audio = await self._audio_of(body)
        media = await self.store_audio(audio, audio_format)
        return SpeechResult(
            provider=self.identifier,
            voice_id=speech.voice_id,
            media=media,
            characters=_int_or(body.get("consumedCharacterCount"), len(speech.text)),
            duration_seconds=_float_or_none(body.get("audioLengthInSeconds")),
        )

    async def _audio_of(self, body: Mapping[str, Any]) -> bytes:
        """The inline ``encodedAudio`` when present, else the bytes behind ``audioFile``."""
        encoded = body.get("encodedAudio")
        if isinstance(encoded, str) and encoded:
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise Transient(
                    "returned encodedAudio that is not base64", provider=self.identifier
                ) from None
        url = body.get("audioFile")
        if not isinstance(url, str) or not url:
            raise Transient("returned neither encodedAudio nor audioFile", provider=self.identifier)
        audio, _media_type = await self.download_audio(url)
        return audio

    # -- exposed functions -------------------------------------------------------------------

    @expose
    async def voices(
        self, credentials: Mapping[str, str], params: MurfVoicesInput
    ) -> list[dict[str, Any]]:
        """Every Murf voice, filtered here by locale (incl. supported locales) and gender."""
        query = {"model": params.model} if params.model else None
        body = await self.get_json("/v1/speech/voices", credentials, params=query)
        items = body if isinstance(body, list) else []
        return [
            voice_from(item).model_dump(mode="json")
            for item in items
            if isinstance(item, dict) and matches(item, params)
        ]

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Status decides (400, 401/403, 402 quota, 429, 5xx); the message is read defensively."""
        message, code = _message_and_code(response)
        return self.error_from_status(response, message=message, code=code)


def generate_body(speech: MurfSpeechRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/speech/generate``, asking for the audio inline."""
    body: dict[str, Any] = {
        "text": speech.text,
        "voiceId": speech.voice_id,
        "format": speech.format or "MP3",
        "encodeAsBase64": True,
    }
    optional = {
        "sampleRate": speech.sample_rate,
        "channelType": speech.channel_type,
        "style": speech.style,
        "rate": speech.rate if speech.rate is not None else _rate_from_speed(speech.speed),
        "pitch": speech.pitch,
        "locale": speech.language,
        "modelVersion": speech.model,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def matches(item: Mapping[str, Any], params: MurfVoicesInput) -> bool:
    """Whether a voice passes the locale and gender filters (case-insensitive)."""
    if params.gender and str(item.get("gender") or "").lower() != params.gender.lower():
        return False
    if params.locale:
        wanted = params.locale.lower()
        locales = {str(item.get("locale") or "").lower()}
        locales |= {str(loc).lower() for loc in (item.get("supportedLocales") or {})}
        if wanted not in locales:
            return False
    return True


def voice_from(item: Mapping[str, Any]) -> Voice:
    """A Murf voice in the common voice shape."""
    return Voice(
        id=str(item.get("voiceId")),
        name=str(item.get("displayName") or item.get("voiceId")),
        language=item.get("locale"),
        gender=item.get("gender"),
        accent=item.get("accent"),
        description=item.get("description"),
        labels={
            "display_language": item.get("displayLanguage"),
            "styles": list(item.get("availableStyles") or []),
            "supported_locales": sorted(item.get("supportedLocales") or {}),
        },
    )


def _rate_from_speed(speed: float | None) -> int | None:
    return None if speed is None else max(-50, min(50, round((speed - 1) * 100)))


def _message_and_code(response: httpx.Response) -> tuple[str, str | int | None]:
    """Murf's error fields if the body is JSON we recognise, else the raw text."""
    text = response.text.strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("errorMessage", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                code = body.get("errorCode") or body.get("code")
                return value[:500], code if isinstance(code, str | int) else None
    return text[:300] or response.reason_phrase or f"HTTP {response.status_code}", None


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value >= 0 else default


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
