"""Runway (developer API): image-to-video tasks, polled until they finish.

Every request carries ``Authorization: Bearer <key>`` and the API version header
``X-Runway-Version: 2024-11-06``. The organization endpoint proves the key but names nobody, so
the account id is a keyed fingerprint. Errors come as ``{error}``; 429/502/503/504 are retried
with ``retry-after-ms`` / ``Retry-After`` honoured; a ``THROTTLED`` task is still queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from arkyra.errors import InvalidInput, ProviderError
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    api_key_field,
    expose,
    third_party,
)
from arkyra.providers.jobs import JobStatus, RenderJob, RenderProvider

API_VERSION = "2024-11-06"

#: Output URLs expire 24-48 h after the task is fetched; promise only the lower bound.
RESULT_URL_LIFETIME = timedelta(hours=24)

#: Runway's task states -> ours. THROTTLED waits for a concurrency slot: still queued.
TASK_STATUS: dict[str, JobStatus] = {
    "PENDING": JobStatus.QUEUED,
    "THROTTLED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "CANCELLED": JobStatus.CANCELLED,
}

#: Statuses Runway documents as retryable, for every method (no task was started).
VENDOR_RETRYABLE = frozenset({429, 502, 503, 504})

Ratio = Literal["1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"]
#: A prompt image is an https URL, a ``runway://`` upload, or a data URI (<= 5 MB as base64).
IMAGE_URI_PREFIXES = ("https://", "runway://", "data:image/")
MAX_IMAGE_URI_CHARS = 7_000_000


class _CamelModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class PromptImage(_CamelModel):
    uri: str
    position: Literal["first"] = "first"


class ContentModeration(_CamelModel):
    public_figure_threshold: Literal["auto", "low"] | None = None


class RunwayImageToVideo(_CamelModel):
    """``POST /v1/image_to_video`` for ``gen4_turbo`` or ``gen4.5``."""

    model: Literal["gen4_turbo", "gen4.5"]
    prompt_image: str | list[PromptImage]
    ratio: Ratio
    prompt_text: str | None = Field(default=None, min_length=1, max_length=1000)
    duration: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, le=4_294_967_295)
    content_moderation: ContentModeration | None = None

    @field_validator("prompt_image")
    @classmethod
    def _image_uris(cls, value: str | list[PromptImage]) -> str | list[PromptImage]:
        uris = [value] if isinstance(value, str) else [image.uri for image in value]
        for uri in uris:
            if not uri.startswith(IMAGE_URI_PREFIXES) or len(uri) > MAX_IMAGE_URI_CHARS:
                raise ValueError("must be an https URL, a runway:// URI or a data URI (<= 5 MB)")
        return value

    def model_problems(self) -> dict[str, str]:
        """Per-field problems the schema alone cannot see (what each model requires)."""
        problems: dict[str, str] = {}
        if isinstance(self.prompt_image, list) and not self.prompt_image:
            problems["promptImage"] = "give at least one image"
        if self.model == "gen4.5":
            if self.prompt_text is None:
                problems["promptText"] = "required for gen4.5"
            if self.duration is None or not 2 <= self.duration <= 10:
                problems["duration"] = "gen4.5 needs a duration from 2 to 10 seconds"
        return problems

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Voice(BaseModel):
    """A custom voice of the organization; only ``READY`` voices can be used."""

    id: str
    name: str
    status: str
    description: str | None = None
    preview_url: str | None = None
    failure_reason: str | None = None
    created_at: str | None = None


class VoicesInput(ExposedInput):
    page_size: int = Field(default=100, ge=1, le=100)
    status: Literal["PROCESSING", "READY", "FAILED"] | None = None


def parse_request(data: Any) -> RunwayImageToVideo:
    """Validate ``data`` (a model or a dict) into the request; ``InvalidInput`` per field."""
    if isinstance(data, RunwayImageToVideo):
        request = data
    elif not isinstance(data, Mapping):
        raise InvalidInput("runway: the render request must be an object", {"input": "object"})
    else:
        try:
            request = RunwayImageToVideo.model_validate(dict(data))
        except ValidationError as exc:
            errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
            raise InvalidInput("invalid render request for runway", errors) from None
    problems = request.model_problems()
    if problems:
        raise InvalidInput(f"invalid render request for runway {request.model}", problems)
    return request


@third_party(
    identifier="runway",
    title="Runway",
    description="Generative video from an image and a prompt (Gen-4 Turbo, Gen-4.5).",
    category="video",
    fields=[api_key_field(help="Runway developer portal > API keys.")],
)
class RunwayProvider(RenderProvider):
    """Runway image-to-video tasks, task polling, and the organization's voices."""

    default_base_url = "https://api.dev.runwayml.com"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key(credentials)}",
            "X-Runway-Version": API_VERSION,
        }

    # -- errors ------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Status decides the class (429/5xx/408/409 retryable); ``error`` is the message."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        text = str(error)[:500] if error else response.text.strip()[:300]
        message = text or response.reason_phrase or "error"
        error = self.error_from_status(response, message=message)
        if response.status_code in VENDOR_RETRYABLE:
            # Runway documents these as safe to repeat (no task was started), POSTs included.
            error.details["request_sent"] = False
        return error

    # -- contract ----------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v1/organization``: proves the key (401 when wrong); no identity comes back."""
        await self.get_json("/v1/organization", credentials)
        return AccountInfo(
            id=self.fingerprint(self.api_key(credentials)),
            name=credentials.get("label") or self.title,
        )

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> RenderJob:
        """Start an image-to-video task; the answer is only its id, so it starts queued."""
        request = parse_request(data)
        body = await self.post_json("/v1/image_to_video", credentials, request.to_body())
        task_id = body.get("id") if isinstance(body, dict) else None
        if not task_id:
            raise ProviderError("answered without a task id", provider=self.identifier)
        return RenderJob(
            provider=self.identifier, id=str(task_id), status=JobStatus.QUEUED, raw=body
        )

    # -- jobs --------------------------------------------------------------------------------

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """The task's state, progress, first output URL, or failure and failure code."""
        body = await self.get_json(f"/v1/tasks/{quote(job_id, safe='')}", credentials)
        return self.to_job(body)

    def to_job(self, body: Any) -> RenderJob:
        """A task object as a :class:`RenderJob`."""
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderError("answered without a task id", provider=self.identifier)
        vendor_status = str(body.get("status") or "PENDING")
        status = TASK_STATUS.get(vendor_status, JobStatus.RUNNING)
        output = body.get("output")
        progress = body.get("progress")
        if status is JobStatus.SUCCEEDED:
            progress = 1.0
        failure = body.get("failure")
        failure_code = body.get("failureCode")
        result_url = output[0] if isinstance(output, list) and output else None
        return RenderJob(
            provider=self.identifier,
            id=str(body["id"]),
            status=status,
            vendor_status=vendor_status,
            progress=min(1.0, max(0.0, float(progress)))
            if isinstance(progress, int | float)
            else None,
            result_url=result_url,
            result_expires_at=datetime.now(UTC) + RESULT_URL_LIFETIME if result_url else None,
            failure_reason=str(failure) if failure else None,
            failure_code=str(failure_code) if failure_code else None,
            raw=body,
        )

    # -- catalogue ---------------------------------------------------------------------------

    @expose
    async def voices(self, credentials: Mapping[str, str], params: VoicesInput) -> list[Voice]:
        """Every custom voice of the organization (all pages), optionally by status."""

        async def fetch(page: dict[str, Any]) -> Any:
            query = {"limit": params.page_size, **page}
            return await self.get_json("/v1/voices", credentials, params=query)

        paginator = CursorPaginator(
            cursor_param="cursor",
            next_cursor=lambda body: body.get("nextCursor") if isinstance(body, dict) else None,
            items=lambda body: list(body.get("data") or []),
        )
        items = await paginator.collect(fetch)
        voices = [_voice(v) for v in items if isinstance(v, dict) and v.get("id")]
        return [v for v in voices if params.status in (None, v.status)]


def _voice(item: dict[str, Any]) -> Voice:
    return Voice(
        id=str(item["id"]),
        name=str(item.get("name") or item["id"]),
        status=str(item.get("status") or ""),
        description=item.get("description") or None,
        preview_url=item.get("previewUrl") or None,
        failure_reason=item.get("failureReason") or None,
        created_at=item.get("createdAt") or None,
    )
