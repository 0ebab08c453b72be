"""Synthesia (API v2): avatar videos from a script or a template, polled until they finish.

Auth is the raw API key in ``Authorization`` (no ``Bearer``). There is no account endpoint, so
the connection check lists one video and the account id is a keyed fingerprint of the key.
Errors come as ``{error, context?}``; a 429 says how long to wait in ``RateLimit-Reset``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from arkyra.errors import InvalidInput, ProviderError
from arkyra.http.paginate import CursorPaginator
from arkyra.http.retry import parse_retry_after
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    api_key_field,
    expose,
    third_party,
)
from arkyra.providers.jobs import (
    LOOKUP_MAX_PAGES,
    LOOKUP_PAGE_SIZE,
    JobStatus,
    RenderJob,
    RenderProvider,
)

#: Synthesia's video states -> ours. ``approved`` is a moderation step, still rendering.
VIDEO_STATUS: dict[str, JobStatus] = {
    "in_progress": JobStatus.RUNNING,
    "approved": JobStatus.RUNNING,
    "complete": JobStatus.SUCCEEDED,
    "error": JobStatus.FAILED,
    "rejected": JobStatus.FAILED,
    "deleted": JobStatus.CANCELLED,
}

AspectRatio = Literal["16:9", "9:16", "1:1", "4:5", "5:4"]
Visibility = Literal["private", "public"]


class _CamelModel(BaseModel):
    """Fields in snake_case for Python, camelCase on the wire; both spellings accepted."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class AvatarSettings(_CamelModel):
    voice: str | None = None
    horizontal_align: Literal["left", "center", "right"] | None = None
    scale: float | None = Field(default=None, gt=0)
    style: Literal["rectangular", "circular"] | None = None


class SynthesiaClip(_CamelModel):
    """One scene: an avatar on a background speaking a script (text, or audio + language)."""

    avatar: str = Field(min_length=1)
    background: str = Field(min_length=1)
    script_text: str | None = Field(default=None, min_length=1)
    script_audio: str | None = Field(default=None, pattern=r"^https://")
    script_language: str | None = None
    avatar_settings: AvatarSettings | None = None

    @model_validator(mode="after")
    def _one_script(self) -> SynthesiaClip:
        if (self.script_text is None) == (self.script_audio is None):
            raise ValueError("give exactly one of scriptText or scriptAudio")
        if self.script_audio is not None and not self.script_language:
            raise ValueError("scriptAudio needs scriptLanguage")
        return self


class SynthesiaVideoRequest(_CamelModel):
    """``POST /v2/videos``: a video from scenes."""

    input: list[SynthesiaClip] = Field(min_length=1)
    test: bool | None = None
    title: str | None = None
    description: str | None = None
    visibility: Visibility | None = None
    aspect_ratio: AspectRatio | None = None
    callback_id: str | None = None


class SynthesiaTemplateRequest(_CamelModel):
    """``POST /v2/videos/fromTemplate``: a video from a template and its variables."""

    template_id: str = Field(min_length=1)
    template_data: dict[str, str] = Field(default_factory=dict)
    test: bool | None = None
    title: str | None = None
    visibility: Visibility | None = None
    callback_id: str | None = None


SynthesiaRequest = SynthesiaVideoRequest | SynthesiaTemplateRequest


class Template(BaseModel):
    """A video template and the variables ``templateData`` can fill."""

    id: str
    title: str
    description: str | None = None
    variables: list[dict[str, Any]] = Field(default_factory=list)
    created_at: int | str | None = None
    last_updated_at: int | str | None = None


class TemplatesInput(ExposedInput):
    source: str | None = Field(default=None, description="Filter: where templates come from.")
    page_size: int = Field(default=50, ge=1, le=100)


def parse_request(data: Any) -> SynthesiaRequest:
    """Validate ``data`` (a model or a dict) into a request model; ``InvalidInput`` per field."""
    if isinstance(data, SynthesiaVideoRequest | SynthesiaTemplateRequest):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput("synthesia: the render request must be an object", {"input": "object"})
    model: type[SynthesiaRequest] = (
        SynthesiaTemplateRequest
        if "template_id" in data or "templateId" in data
        else SynthesiaVideoRequest
    )
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid render request for synthesia", errors) from None


def _message(body: Any, fallback: str) -> str:
    """``error`` plus ``context`` (a string or structured detail) from a Synthesia error body."""
    if not isinstance(body, dict):
        return fallback
    error = body.get("error")
    context = body.get("context")
    text = error if isinstance(error, str) and error else fallback
    if isinstance(context, str) and context:
        text = f"{text}: {context}"
    elif context:
        text = f"{text}: {json.dumps(context)[:300]}"
    return text[:500]


@third_party(
    identifier="synthesia",
    title="Synthesia",
    description="AI avatar videos from a script or a template.",
    category="video",
    fields=[api_key_field(help="Synthesia > Settings > API key (Creator plan or higher).")],
)
class SynthesiaProvider(RenderProvider):
    """Synthesia v2: renders, status polling, and the template catalogue."""

    default_base_url = "https://api.synthesia.io"
    reference_field = "callbackId"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": self.api_key(credentials)}

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        fallback = response.reason_phrase or f"HTTP {response.status_code}"
        code = body.get("error") if isinstance(body, dict) else None
        return self.error_from_status(
            response,
            message=_message(body, fallback),
            code=code if isinstance(code, str) and len(code) <= 80 else None,
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        """``Retry-After`` if sent, else ``RateLimit-Reset`` (seconds to wait)."""
        waited = parse_retry_after(response.headers)
        if waited is not None:
            return waited
        raw = response.headers.get("ratelimit-reset")
        try:
            return max(0.0, float(raw)) if raw is not None else None
        except ValueError:
            return None

    # -- contract ----------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """List one video: the cheapest call that proves the key (403 when it is wrong)."""
        await self.get_json("/v2/videos", credentials, params={"limit": 1})
        return AccountInfo(
            id=self.fingerprint(self.api_key(credentials)),
            name=credentials.get("label") or self.title,
        )

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> RenderJob:
        """Start a render (from scenes, or from a template when ``template_id`` is given)."""
        request = parse_request(data)
        path = (
            "/v2/videos/fromTemplate"
            if isinstance(request, SynthesiaTemplateRequest)
            else "/v2/videos"
        )
        body = await self.post_json(path, credentials, request.to_body())
        return self.to_job(body)

    # -- jobs --------------------------------------------------------------------------------

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """The video's current state, result URL and failure reason."""
        body = await self.get_json(f"/v2/videos/{quote(job_id, safe='')}", credentials)
        return self.to_job(body)

    async def find_submitted(
        self, credentials: Mapping[str, str], reference: str, since: float
    ) -> str | None:
        """The video created at or after ``since`` whose ``callbackId`` is ``reference``.

        Reads ``GET /v2/videos`` pages (free) until a page holds nothing that recent; the
        newest-first order this relies on to stop early is UNCONFIRMED, so at most
        ``LOOKUP_MAX_PAGES`` are read and an error says so beyond that.
        """
        offset: str | None = None
        for _ in range(LOOKUP_MAX_PAGES):
            params: dict[str, Any] = {"limit": LOOKUP_PAGE_SIZE}
            if offset is not None:
                params["offset"] = offset
            body = await self.get_json("/v2/videos", credentials, params=params)
            videos = body.get("videos") if isinstance(body, dict) else None
            recent = [v for v in videos or [] if isinstance(v, dict) and _since(v, since)]
            for video in recent:
                if video.get("callbackId") == reference and video.get("id"):
                    return str(video["id"])
            offset = _next_offset(body)
            if offset is None or not recent:
                return None
        raise ProviderError(
            f"more than {LOOKUP_MAX_PAGES * LOOKUP_PAGE_SIZE} recent videos to search",
            provider=self.identifier,
        )

    def to_job(self, body: Any) -> RenderJob:
        """A VideoResponse as a :class:`RenderJob`."""
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderError("answered without a video id", provider=self.identifier)
        vendor_status = str(body.get("status") or "in_progress")
        status = VIDEO_STATUS.get(vendor_status, JobStatus.RUNNING)
        thumbnail = body.get("thumbnail")
        reason = None
        if status is JobStatus.FAILED:
            error = body.get("error")
            detail = error.get("message") if isinstance(error, dict) else error
            reason = str(detail) if detail else f"video {vendor_status}"
        return RenderJob(
            provider=self.identifier,
            id=str(body["id"]),
            status=status,
            vendor_status=vendor_status,
            result_url=body.get("download") or None,
            thumbnail_url=thumbnail.get("image") if isinstance(thumbnail, dict) else None,
            duration_seconds=_seconds(body.get("duration")),
            failure_reason=reason,
            failure_code=vendor_status if status is JobStatus.FAILED else None,
            raw=body,
        )

    # -- catalogue ---------------------------------------------------------------------------

    @expose
    async def templates(
        self, credentials: Mapping[str, str], params: TemplatesInput
    ) -> list[Template]:
        """Every template (all pages, following ``nextOffset``), optionally by ``source``."""
        base: dict[str, Any] = {"limit": params.page_size}
        if params.source:
            base["source"] = params.source

        async def fetch(page: dict[str, Any]) -> Any:
            return await self.get_json("/v2/templates", credentials, params={**base, **page})

        paginator = CursorPaginator(
            cursor_param="offset",
            next_cursor=_next_offset,
            items=lambda body: list(body.get("templates") or []),
        )
        return [_template(item) for item in await paginator.collect(fetch) if _has_id(item)]


def _since(video: dict[str, Any], since: float) -> bool:
    """Whether a listed video was created at or after ``since`` (unknown times count)."""
    created = video.get("createdAt")
    return not isinstance(created, int | float) or created >= since


def _has_id(item: Any) -> bool:
    return isinstance(item, dict) and bool(item.get("id"))


def _template(item: dict[str, Any]) -> Template:
    variables = item.get("variables")
    return Template(
        id=str(item["id"]),
        title=str(item.get("title") or item["id"]),
        description=item.get("description") or None,
        variables=[v for v in variables if isinstance(v, dict)]
        if isinstance(variables, list)
        else [],
        created_at=item.get("createdAt"),
        last_updated_at=item.get("lastUpdatedAt"),
    )


def _next_offset(body: Any) -> str | None:
    value = body.get("nextOffset") if isinstance(body, dict) else None
    return None if value in (None, "") else str(value)


def _seconds(value: Any) -> float | None:
    """Synthesia gives ``duration`` as a number or a string like ``"0:00:12.3"``."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            total = 0.0
            for part in value.split(":"):
                total = total * 60 + float(part)
            return total
        except ValueError:
            return None
    return None
