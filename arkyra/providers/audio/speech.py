"""What every voice provider takes and returns, and the plumbing they share.

``SpeechRequest`` holds the fields every vendor understands (a fallback chain can hand the same
request to ElevenLabs, Murf or PlayHT); each provider subclasses it with its own options.
``SpeechResult`` points at the stored audio, never at a vendor URL that will expire.
``SpeechProvider`` adds the media store, audio downloads from vendor result URLs (sent without
the API credentials, which must never leave for a CDN) and secret redaction in errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arkyra.config import Settings
from arkyra.errors import InvalidInput, JobFailed, ProviderError, Transient
from arkyra.media.store import MediaStore, StoredMedia, normalise_content_type
from arkyra.providers.base import ThirdPartyProvider

#: Media type and file suffix of every audio format the store accepts, by short name.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("audio/mpeg", ".mp3"),
    "wav": ("audio/wav", ".wav"),
    "flac": ("audio/flac", ".flac"),
    "ogg": ("audio/ogg", ".ogg"),
    "pcm": ("audio/pcm", ".pcm"),
}

_DOWNLOAD_CHUNK = 64 * 1024


class SpeechRequest(BaseModel):
    """The common input of a speech synthesis; providers subclass it with their own options."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=100_000)
    voice_id: str = Field(min_length=1, max_length=300)
    model: str | None = Field(default=None, max_length=100)
    format: str | None = Field(default=None, max_length=40)
    speed: float | None = Field(default=None, gt=0, le=4)
    language: str | None = Field(default=None, max_length=20)


class SpeechResult(BaseModel):
    """A finished synthesis: the stored audio and what it cost in characters."""

    provider: str
    voice_id: str
    media: StoredMedia
    characters: int
    duration_seconds: float | None = None


class Voice(BaseModel):
    """A voice as the catalogue shows it, the same shape for every vendor."""

    id: str
    name: str
    category: str | None = None
    language: str | None = None
    gender: str | None = None
    accent: str | None = None
    description: str | None = None
    preview_url: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)


R = TypeVar("R", bound=SpeechRequest)


def parse_speech_request(model: type[R], data: Any, provider: str) -> R:
    """Validate ``data`` (a dict or any ``SpeechRequest``) into ``model``; ``InvalidInput`` else."""
    if isinstance(data, model):
        return data
    if isinstance(data, SpeechRequest):
        data = data.model_dump(exclude_unset=True)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput(f"invalid speech request for {provider}", errors) from None


class SpeechProvider(ThirdPartyProvider):
    """Base of the voice providers: a media store, result downloads and secret redaction."""

    #: Credential fields whose values must never appear in an error.
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        client: httpx.AsyncClient | None = None,
        media_store: MediaStore | None = None,
    ) -> None:
        super().__init__(settings=settings, client=client)
        self.media_store = media_store or MediaStore.from_settings(self.settings)

    async def request(
        self, method: str, path: str, credentials: Mapping[str, str], **kwargs: Any
    ) -> httpx.Response:
        """The base request, with any credential value scrubbed from the errors it raises."""
        try:
            return await super().request(method, path, credentials, **kwargs)
        except ProviderError as exc:
            raise redact(exc, self._secrets(credentials)) from None

    #: Whether :meth:`find_spoken` can look a past synthesis up in the vendor's history.
    finds_spoken: ClassVar[bool] = False

    async def find_spoken(
        self, credentials: Mapping[str, str], data: Any, since: float
    ) -> SpeechResult | None:
        """The same synthesis (text, voice, model) made at or after ``since`` (unix seconds),
        fetched from the vendor's history and stored, or ``None`` when there is none.

        Speech is paid in one call that returns the audio, so a worker stopped before it kept
        the audio would pay again; this gets that audio back for free where the vendor keeps
        it. Only providers with ``finds_spoken`` implement it.
        """
        raise NotImplementedError(f"{self.identifier} keeps no history to look in")

    def _secrets(self, credentials: Mapping[str, str]) -> list[str]:
        values = (credentials.get(name) for name in self.secret_fields)
        return [v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= 4]

    async def store_audio(self, audio: bytes, audio_format: str) -> StoredMedia:
        """Put synthesised audio in the media store under its content hash."""
        if not audio:
            raise Transient("returned no audio", provider=self.identifier)
        content_type, suffix = AUDIO_FORMATS[audio_format]
        return await self.media_store.put_bytes(audio, content_type=content_type, suffix=suffix)

    async def download_audio(self, url: str) -> tuple[bytes, str]:
        """Fetch a vendor result URL without credentials; return the bytes and media type.

        Bounded by the media store's size limit. A 5xx or a broken connection is ``Transient``;
        any other failure is ``JobFailed`` (the synthesis was paid; a new one would pay again).
        """
        if not url.lower().startswith(("https://", "http://")):
            raise JobFailed("returned an audio URL that is not http(s)", provider=self.identifier)
        try:
            async with self.client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise self._download_error(response.status_code)
                audio = await self._read_bounded(response)
                media_type = normalise_content_type(response.headers.get("content-type", ""))
        except httpx.TransportError as exc:
            raise Transient(
                f"could not download the audio ({type(exc).__name__})", provider=self.identifier
            ) from None
        return audio, media_type

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        limit = self.media_store.max_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
            size += len(chunk)
            if size > limit:
                raise JobFailed(
                    f"the audio is larger than the media limit of {limit} bytes",
                    provider=self.identifier,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _download_error(self, status: int) -> ProviderError:
        message = f"could not download the audio (HTTP {status})"
        if status >= 500 or status == 429:
            return Transient(message, provider=self.identifier, status=status)
        return JobFailed(message, provider=self.identifier, status=status)


def redact(exc: ProviderError, secrets: list[str]) -> ProviderError:
    """Replace every secret in the error's message and string details with ``[redacted]``."""

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "[redacted]")
        return text

    exc.message = scrub(exc.message)
    exc.details = {k: scrub(v) if isinstance(v, str) else v for k, v in exc.details.items()}
    exc.args = (exc._render(),)
    return exc
