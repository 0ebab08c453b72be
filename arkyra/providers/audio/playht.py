"""PlayHT: asynchronous text-to-speech jobs and voices (reference section 7). DEPRECATED.

PlayHT announced its shutdown (platform sunset 2025-12-31); this client follows the documented
v2 API so existing integrations keep a clear error path, and is flagged ``deprecated``.

Auth is two headers: ``X-USER-ID`` (not secret, it is also the account id) and
``AUTHORIZATION`` (the secret key, bare, as the docs show). ``POST /api/v2/tts`` with
``accept: application/json`` answers 201 with a job; the job is done when ``output.url`` is set
(PlayHT documents no status field, so that is the only signal we trust).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from arkyra.errors import JobFailed, ProviderError, Transient
from arkyra.providers.audio.speech import (
    SpeechProvider,
    SpeechRequest,
    SpeechResult,
    Voice,
    parse_speech_request,
)
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    api_key_field,
    expose,
    require_credential,
    third_party,
)
from arkyra.providers.jobs import JobStatus, RenderJob, poll_job

DEFAULT_VOICE_ENGINE = "PlayHT2.0"
JSON_ACCEPT = {"accept": "application/json"}


class PlayHTSpeechRequest(SpeechRequest):
    """PlayHT options. ``voice_id`` is PlayHT's voice id (an ``s3://.../manifest.json`` URI);
    ``model`` is the ``voice_engine``. ``language`` is not part of the documented v2 body and is
    ignored, so one request can still fall back across voice providers."""

    voice_id: str = Field(min_length=1, max_length=500)
    model: Literal["PlayHT2.0", "Play3.0-mini", "PlayDialog"] | None = None
    format: Literal["mp3", "wav", "ogg", "flac"] | None = None
    speed: float | None = Field(default=None, ge=0.1, le=5)
    quality: Literal["draft", "low", "medium", "high", "premium"] | None = None
    sample_rate: int | None = Field(default=None, ge=8000, le=48000)
    seed: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    emotion: str | None = Field(default=None, max_length=50)

    @field_validator("format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class PlayHTVoicesInput(ExposedInput):
    """Filters applied to ``GET /api/v2/voices`` (PlayHT filters nothing server-side)."""

    language: str | None = Field(default=None, max_length=50, description="name or code")
    gender: str | None = Field(default=None, max_length=20)
    voice_engine: str | None = Field(default=None, max_length=40)
    include_cloned: bool = False


class PlayHTJobInput(ExposedInput):
    """A TTS job id, to look at a job again (e.g. after our deadline passed)."""

    job_id: str = Field(min_length=1, max_length=200)


@third_party(
    identifier="playht",
    title="PlayHT",
    description=(
        "DEPRECATED: PlayHT has announced its shutdown and its API may no longer answer. "
        "Text-to-speech through the PlayHT v2 API; prefer ElevenLabs or Murf."
    ),
    category="audio",
    fields=[
        CredentialField("user_id", "User ID", "text", help="Sent as X-USER-ID."),
        api_key_field("Secret key", help="Sent as AUTHORIZATION."),
    ],
)
class PlayHTProvider(SpeechProvider):
    """Speech from PlayHT (deprecated vendor), stored in the media store."""

    default_base_url = "https://api.play.ht"
    deprecated = True

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {
            "X-USER-ID": require_credential(credentials, "user_id", self.identifier),
            "AUTHORIZATION": require_credential(credentials, "api_key", self.identifier),
        }

    # -- the contract ------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /api/v2/cloned-voices``; the account id is the user id they gave us."""
        await self.get_json("/api/v2/cloned-voices", credentials, headers=JSON_ACCEPT)
        user_id = require_credential(credentials, "user_id", self.identifier)
        return AccountInfo(id=user_id, name=credentials.get("label") or self.title)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> SpeechResult:
        """Start a TTS job, poll it until ``output.url`` is set, then download and store."""
        speech = parse_speech_request(PlayHTSpeechRequest, data, self.identifier)
        created = await self.post_json(
            "/api/v2/tts", credentials, tts_body(speech), headers=JSON_ACCEPT
        )
        job = self.job_from(created)
        if not job.status.is_final:
            job = await poll_job(
                lambda: self.fetch_job(credentials, job.id),
                initial_delay=self.settings.job_poll_initial_seconds,
                max_delay=self.settings.job_poll_max_seconds,
                deadline_seconds=self.settings.job_deadline_seconds,
            )
        if job.status is not JobStatus.SUCCEEDED or not job.result_url:
            raise JobFailed(
                job.failure_reason or f"job {job.id} ended {job.status}",
                provider=self.identifier,
                details={"job_id": job.id},
            )
        audio, _media_type = await self.download_audio(job.result_url)
        media = await self.store_audio(audio, speech.format or "mp3")
        return SpeechResult(
            provider=self.identifier,
            voice_id=speech.voice_id,
            media=media,
            characters=len(speech.text),
            duration_seconds=job.duration_seconds,
        )

    async def fetch_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """``GET /api/v2/tts/{id}`` as a :class:`RenderJob`."""
        body = await self.get_json(
            f"/api/v2/tts/{quote(job_id, safe='')}", credentials, headers=JSON_ACCEPT
        )
        return self.job_from(body)

    def job_from(self, body: Any) -> RenderJob:
        """Map a PlayHT job: a non-null ``output.url`` is done; an ``error`` is a failure."""
        if not isinstance(body, dict) or not body.get("id"):
            raise Transient("returned a TTS job without an id", provider=self.identifier)
        output = body.get("output") if isinstance(body.get("output"), dict) else {}
        url = output.get("url") or None
        vendor_status = str(body.get("status") or ("complete" if url else "pending"))
        reason = _failure_reason(body)
        if url:
            status = JobStatus.SUCCEEDED
        elif reason is not None or vendor_status.lower() in ("failed", "error"):
            status = JobStatus.FAILED
        else:
            status = JobStatus.RUNNING
        duration = output.get("duration")
        if status is JobStatus.FAILED and reason is None:
            reason = f"job {body['id']} failed"
        return RenderJob(
            provider=self.identifier,
            id=str(body["id"]),
            status=status,
            vendor_status=vendor_status,
            result_url=url,
            duration_seconds=float(duration) if isinstance(duration, int | float) else None,
            failure_reason=reason,
            raw=body,
        )

    # -- exposed functions -------------------------------------------------------------------

    @expose
    async def voices(
        self, credentials: Mapping[str, str], params: PlayHTVoicesInput
    ) -> list[dict[str, Any]]:
        """PlayHT's stock voices (and, on request, the account's cloned ones), filtered here."""
        stock = await self.get_json("/api/v2/voices", credentials, headers=JSON_ACCEPT)
        voices = [voice_from(item) for item in _dicts(stock) if matches(item, params)]
        if params.include_cloned:
            cloned = await self.get_json("/api/v2/cloned-voices", credentials, headers=JSON_ACCEPT)
            voices += [cloned_voice_from(item) for item in _dicts(cloned)]
        return [voice.model_dump(mode="json") for voice in voices]

    @expose
    async def job(self, credentials: Mapping[str, str], params: PlayHTJobInput) -> dict[str, Any]:
        """One TTS job's state (id, status, result URL)."""
        job = await self.fetch_job(credentials, params.job_id)
        return job.model_dump(mode="json", exclude={"raw"})

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Status decides; PlayHT's error body is undocumented, so the message is defensive."""
        message, code = _message_and_code(response)
        return self.error_from_status(response, message=message, code=code)


def tts_body(speech: PlayHTSpeechRequest) -> dict[str, Any]:
    """The JSON body of ``POST /api/v2/tts``; unset options are left out."""
    body: dict[str, Any] = {
        "text": speech.text,
        "voice": speech.voice_id,
        "voice_engine": speech.model or DEFAULT_VOICE_ENGINE,
    }
    optional = {
        "output_format": speech.format,
        "quality": speech.quality,
        "speed": speech.speed,
        "sample_rate": speech.sample_rate,
        "seed": speech.seed,
        "temperature": speech.temperature,
        "emotion": speech.emotion,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def matches(item: Mapping[str, Any], params: PlayHTVoicesInput) -> bool:
    """Whether a stock voice passes the language, gender and engine filters."""
    if params.gender and str(item.get("gender") or "").lower() != params.gender.lower():
        return False
    if params.language:
        wanted = params.language.lower()
        names = {str(item.get("language") or "").lower(), str(item.get("language_code") or "")}
        if wanted not in {name.lower() for name in names}:
            return False
    engine = params.voice_engine
    return not engine or str(item.get("voice_engine") or "").lower() == engine.lower()


def voice_from(item: Mapping[str, Any]) -> Voice:
    """A stock PlayHT voice in the common voice shape."""
    return Voice(
        id=str(item.get("id")),
        name=str(item.get("name") or item.get("id")),
        category="stock",
        language=item.get("language_code") or item.get("language"),
        gender=item.get("gender"),
        accent=item.get("accent"),
        preview_url=item.get("sample"),
        labels={
            key: item.get(key)
            for key in ("age", "style", "tempo", "texture", "voice_engine", "language")
            if item.get(key) is not None
        },
    )


def cloned_voice_from(item: Mapping[str, Any]) -> Voice:
    """A cloned voice (``{id, name, type}``) in the common voice shape."""
    return Voice(
        id=str(item.get("id")),
        name=str(item.get("name") or item.get("id")),
        category="cloned",
        labels={"type": item.get("type")} if item.get("type") else {},
    )


def _dicts(body: Any) -> list[dict[str, Any]]:
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _failure_reason(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("error_message") or "synthesis failed")
    if isinstance(error, str) and error:
        return error
    return None


def _message_and_code(response: httpx.Response) -> tuple[str, str | None]:
    """``error_message``/``error_id`` (or similar) from a JSON body, else the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error_message", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                code = body.get("error_id") or body.get("code")
                return value[:500], str(code) if code else None
    text = response.text.strip()[:300]
    return text or response.reason_phrase or f"HTTP {response.status_code}", None
