"""D-ID: talking-head videos from a photo (talks) or a stock presenter (clips), polled to the end.

Auth sends the Studio key verbatim as ``Authorization: Basic <key>`` (the key is already the
``user:password`` pair D-ID shows). ``GET /credits`` proves the key and names the owner. Errors
come as ``{kind, description}``: 402 means no credits, 451 means the content was refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arkyra.errors import InvalidInput, ProviderError, QuotaExhausted
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    api_key_field,
    expose,
    third_party,
)
from arkyra.providers.jobs import JobStatus, RenderJob, RenderProvider

#: D-ID's talk/clip states -> ours.
TALK_STATUS: dict[str, JobStatus] = {
    "created": JobStatus.QUEUED,
    "started": JobStatus.RUNNING,
    "done": JobStatus.SUCCEEDED,
    "error": JobStatus.FAILED,
    "rejected": JobStatus.FAILED,
}

#: Body ``kind`` values that mean "out of credits" whatever the status code.
QUOTA_KINDS = frozenset({"InsufficientCreditsError", "NoCreditsError"})

HttpsUrl = Annotated[str, Field(pattern=r"^https://\S+$", max_length=2000)]
VoiceProvider = Literal["microsoft", "elevenlabs", "amazon", "google", "azure-openai"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class MicrosoftVoice(_Model):
    type: Literal["microsoft"] = "microsoft"
    voice_id: str = Field(min_length=1)


class TextScript(_Model):
    """Text spoken by a Microsoft neural voice (optionally SSML)."""

    type: Literal["text"] = "text"
    input: str = Field(min_length=3, max_length=40_000)
    provider: MicrosoftVoice
    ssml: bool | None = None


class AudioScript(_Model):
    """A recorded voice track the face lip-syncs to."""

    type: Literal["audio"] = "audio"
    audio_url: HttpsUrl


Script = Annotated[TextScript | AudioScript, Field(discriminator="type")]


class DIdTalkRequest(_Model):
    """``POST /talks``: animate the face in ``source_url`` (an https .jpg/.jpeg/.png)."""

    source_url: Annotated[str, Field(pattern=r"(?i)^https://\S+\.(jpe?g|png)(\?\S*)?$")]
    script: Script
    config: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=200)
    user_data: str | None = Field(default=None, max_length=1000)
    webhook: HttpsUrl | None = None
    result_url: HttpsUrl | None = None


class DIdClipRequest(_Model):
    """``POST /clips``: a stock presenter speaks the script."""

    presenter_id: str = Field(min_length=1)
    driver_id: str | None = None
    script: Script
    background: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    user_data: str | None = Field(default=None, max_length=1000)
    webhook: HttpsUrl | None = None


DIdRequest = DIdTalkRequest | DIdClipRequest


class Presenter(BaseModel):
    """A stock presenter for clips; ``id`` goes into ``presenter_id``."""

    id: str
    name: str
    gender: str | None = None
    driver_id: str | None = None
    preview_url: str | None = None
    talking_preview_url: str | None = None
    thumbnail_url: str | None = None
    is_greenscreen: bool = False


class Voice(BaseModel):
    """A text-to-speech voice; ``id`` goes into ``script.provider.voice_id``."""

    id: str
    name: str
    provider: str
    gender: str | None = None
    languages: list[str] = Field(default_factory=list, description="Language names.")
    locales: list[str] = Field(default_factory=list)
    access: str | None = None
    styles: list[str] = Field(default_factory=list)


class PresentersInput(ExposedInput):
    page_size: int = Field(default=100, ge=1, le=100)


class VoicesInput(ExposedInput):
    provider: VoiceProvider = "microsoft"
    language: str | None = Field(default=None, description="e.g. 'English' or 'en-US'.")
    gender: Literal["male", "female"] | None = None


def parse_request(data: Any) -> DIdRequest:
    """A clip when ``presenter_id`` is given, else a talk; ``InvalidInput`` per field."""
    if isinstance(data, DIdTalkRequest | DIdClipRequest):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput("d-id: the render request must be an object", {"input": "object"})
    model: type[DIdRequest] = DIdClipRequest if "presenter_id" in data else DIdTalkRequest
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid render request for d-id", errors) from None


def _error_parts(body: Any) -> tuple[str | None, str | None]:
    """``(kind, description)`` from a D-ID error body (or a job's ``error`` field)."""
    if not isinstance(body, dict):
        return None, str(body) if body else None
    kind = body.get("kind")
    description = body.get("description") or body.get("message")
    return (
        str(kind) if kind else None,
        str(description)[:500] if description else None,
    )


def _voice_matches(voice: Voice, params: VoicesInput) -> bool:
    """Gender exactly; language by name (``English``), locale (``en-US``) or prefix (``en``)."""
    if params.gender and (voice.gender or "").lower() != params.gender:
        return False
    if not params.language:
        return True
    wanted = params.language.lower()
    names = [n.lower() for n in (*voice.languages, *voice.locales)]
    return any(n == wanted or n.startswith(wanted + "-") for n in names)


@third_party(
    identifier="d-id",
    title="D-ID",
    description="Talking-head videos from a photo or a stock presenter.",
    category="video",
    fields=[api_key_field(help="D-ID Studio > API key (shown as user:password).")],
)
class DIdProvider(RenderProvider):
    """D-ID talks and clips, status polling, presenters and voices."""

    default_base_url = "https://api.d-id.com"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Basic {self.api_key(credentials)}"}

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = response.text.strip()[:300] or None
        kind, description = _error_parts(body)
        fallback = response.reason_phrase or f"HTTP {response.status_code}"
        message = description or kind or fallback
        if kind in QUOTA_KINDS:
            return QuotaExhausted(
                message, provider=self.identifier, status=response.status_code, code=kind
            )
        return self.error_from_status(response, message=message, code=kind)

    # -- contract ----------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /credits``: proves the key and gives the owner id."""
        body = await self.get_json("/credits", credentials)
        credits = body.get("credits") if isinstance(body, dict) else None
        owner = credits[0].get("owner_id") if credits and isinstance(credits[0], dict) else None
        return AccountInfo(
            id=str(owner) if owner else self.fingerprint(self.api_key(credentials)),
            name=credentials.get("label") or self.title,
        )

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> RenderJob:
        """Start a talk (photo + script) or a clip (``presenter_id`` + script)."""
        request = parse_request(data)
        path = "/clips" if isinstance(request, DIdClipRequest) else "/talks"
        body = await self.post_json(path, credentials, request.to_body())
        return self.to_job(body)

    # -- jobs --------------------------------------------------------------------------------

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """A talk (``tlk_…``) or clip (``clp_…``) with its state, result URL and error."""
        kind = "clips" if job_id.startswith("clp_") else "talks"
        body = await self.get_json(f"/{kind}/{quote(job_id, safe='')}", credentials)
        return self.to_job(body)

    def to_job(self, body: Any) -> RenderJob:
        """A talk or clip object as a :class:`RenderJob`."""
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderError("answered without a talk or clip id", provider=self.identifier)
        vendor_status = str(body.get("status") or "created")
        status = TALK_STATUS.get(vendor_status, JobStatus.RUNNING)
        reason = code = None
        if status is JobStatus.FAILED:
            code, reason = _error_parts(body.get("error"))
            code = code or vendor_status
            reason = reason or f"{body['id']} {vendor_status}"
        duration = body.get("duration")
        return RenderJob(
            provider=self.identifier,
            id=str(body["id"]),
            status=status,
            vendor_status=vendor_status,
            result_url=body.get("result_url") or None,
            thumbnail_url=body.get("thumbnail_url") or None,
            duration_seconds=float(duration) if isinstance(duration, int | float) else None,
            failure_reason=reason,
            failure_code=code,
            raw=body,
        )

    # -- catalogue ---------------------------------------------------------------------------

    @expose
    async def presenters(
        self, credentials: Mapping[str, str], params: PresentersInput
    ) -> list[Presenter]:
        """Every clip presenter, following D-ID's page ``token`` to the last page."""

        async def fetch(page: dict[str, Any]) -> Any:
            query = {"limit": params.page_size, **page}
            return await self.get_json("/clips/presenters", credentials, params=query)

        paginator = CursorPaginator(
            cursor_param="token",
            next_cursor=lambda body: body.get("token") if isinstance(body, dict) else None,
            items=lambda body: list(body.get("presenters") or []),
        )
        items = await paginator.collect(fetch)
        return [_presenter(p) for p in items if isinstance(p, dict) and p.get("presenter_id")]

    @expose
    async def voices(self, credentials: Mapping[str, str], params: VoicesInput) -> list[Voice]:
        """Text-to-speech voices of one provider, filtered by language and gender."""
        body = await self.get_json("/tts/voices", credentials, params={"provider": params.provider})
        items = body if isinstance(body, list) else []
        found = [_voice(v) for v in items if isinstance(v, dict) and v.get("id")]
        return [v for v in found if _voice_matches(v, params)]


def _presenter(item: dict[str, Any]) -> Presenter:
    return Presenter(
        id=str(item["presenter_id"]),
        name=str(item.get("name") or item["presenter_id"]),
        gender=item.get("gender") or None,
        driver_id=item.get("driver_id") or None,
        preview_url=item.get("preview_url") or None,
        talking_preview_url=item.get("talking_preview_url") or None,
        thumbnail_url=item.get("thumbnail_url") or None,
        is_greenscreen=item.get("is_greenscreen") is True,
    )


def _voice(item: dict[str, Any]) -> Voice:
    languages = [e for e in item.get("languages") or [] if isinstance(e, dict)]
    styles = item.get("styles")
    return Voice(
        id=str(item["id"]),
        name=str(item.get("name") or item["id"]),
        provider=str(item.get("provider") or ""),
        gender=item.get("gender") or None,
        languages=[str(e["language"]) for e in languages if e.get("language")],
        locales=[str(e["locale"]) for e in languages if e.get("locale")],
        access=item.get("access") or None,
        styles=[str(x) for x in styles] if isinstance(styles, list) else [],
    )
