"""HeyGen: avatar, photo-avatar and talking-photo videos through API v2 (legacy) or v3.

Contract: ``reference/provider-contracts-media-automation.md`` section 1.

The API version is a per-connection choice: the optional credential field ``api_version``
(``"v2"``, the default, or ``"v3"``); see :meth:`HeyGen.api_version`. Both speak ``X-Api-Key``.

v3 (HeyGen's current API) uses ``GET /v3/users/me``, ``GET /v3/avatars`` and ``GET /v3/voices``
(cursor pages: ``limit`` + ``token``, answered with ``has_more`` + ``next_token``), ``POST
/v3/videos``, ``GET /v3/videos/{id}`` and ``POST /v3/webhooks/endpoints``; its errors are
``{error: {code, message, param, doc_url}}``.

- Auth is the ``X-Api-Key`` header.
- Identity is ``GET /v1/user/me``. Keys without the ``user:read`` scope are refused there
  ("missing user-read to execute this operation"), so such a key is proved with
  ``GET /v2/user/remaining_quota`` instead and identified by a keyed fingerprint.
- A render is ``POST /v2/video/generate`` (paid, never repeated blindly) followed by polls of
  ``GET /v1/video_status.get``; the result URL is signed and expires after 7 days.
- HeyGen has three error body shapes, sometimes on a 200: legacy ``{code, message}`` (``code``
  100 means success), v2 ``{error: {code, message}}`` or ``{error: "..."}``, and v3
  ``{error: {code: "insufficient_credit", message, doc_url}}``. They are mapped once, in
  :meth:`HeyGen.error_from_response`, with :data:`HEYGEN_ERROR_CODES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
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

AUTH_HEADER = "X-Api-Key"

ApiVersion = Literal["v2", "v3"]
API_VERSIONS: tuple[ApiVersion, ...] = ("v2", "v3")
DEFAULT_API_VERSION: ApiVersion = "v2"

#: v3 list pages: HeyGen allows 1-50 avatars per page; we ask for the most.
V3_PAGE_SIZE = 50

#: Webhook events that end an avatar video.
VIDEO_EVENTS = ("avatar_video.success", "avatar_video.fail")

#: Legacy bodies carry ``code: 100`` on success.
LEGACY_SUCCESS_CODE = 100

#: HeyGen documents that ``video_url`` stays valid for 7 days (re-poll to re-sign it).
RESULT_URL_LIFETIME = timedelta(days=7)

#: ``GET /v1/video_status.get`` statuses -> our job states.
VENDOR_STATUS: dict[str, JobStatus] = {
    "pending": JobStatus.QUEUED,
    "waiting": JobStatus.QUEUED,
    "processing": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
}


class ErrorCode(NamedTuple):
    """What a documented HeyGen error code means to us."""

    kind: type[ProviderError]
    name: str


#: Every documented HeyGen error code and the class it maps to.
#:
#: Numeric codes: docs.heygen.com/reference/errors (legacy v1/v2), plus 400123 "Exceed rate
#: limit" from the contract. String codes: developers.heygen.com/docs/error-codes (v3).
#: The body code decides before the HTTP status, except that a 5xx is always ``Transient``;
#: an unknown code falls back to the status. (The copy of the legacy page checked was cut off
#: after INVALID_AUDIO_FORMAT; add later rows here as they are confirmed.)
HEYGEN_ERROR_CODES: dict[int | str, ErrorCode] = {
    # -- credentials and account ------------------------------------------------------------
    40009: ErrorCode(InvalidCredentials, "INVALID_CREDENTIALS"),
    400101: ErrorCode(InvalidCredentials, "USER_NOT_FOUND"),
    400112: ErrorCode(InvalidCredentials, "UNAUTHORIZED"),
    401057: ErrorCode(InvalidCredentials, "INVALID_ACCESS_TOKEN"),
    401056: ErrorCode(InvalidCredentials, "ACCESS_TOKEN_EXPIRED"),
    400573: ErrorCode(InvalidCredentials, "PERMISSION_DENIED"),
    400562: ErrorCode(InvalidCredentials, "FORBIDDEN"),
    400631: ErrorCode(InvalidCredentials, "USER_BLOCKED"),
    400561: ErrorCode(BadRequest, "SPACE_NOT_FOUND"),
    400599: ErrorCode(QuotaExhausted, "TIER_NOT_SUPPORT"),
    # -- our input -------------------------------------------------------------------------
    40001: ErrorCode(BadRequest, "MISSING_PARAMS"),
    400175: ErrorCode(BadRequest, "INVALID_PARAMETER"),
    40012: ErrorCode(BadRequest, "INVALID_QUERY_PARAM"),
    40065: ErrorCode(BadRequest, "INVALID_VIDEO_INFOS"),
    40039: ErrorCode(BadRequest, "INVALID_TEXT_INPUT"),
    400105: ErrorCode(ContentRejected, "BLOCKED_WORDS_DETECTED"),
    40010: ErrorCode(BadRequest, "VIDEO_FORMAT_NOT_SUPPORTED"),
    40031: ErrorCode(BadRequest, "INVALID_VIDEO_ID"),
    400652: ErrorCode(BadRequest, "VIDEO_FILE_CORRUPTED"),
    400621: ErrorCode(BadRequest, "EMPTY_VIDEO_STREAM"),
    400624: ErrorCode(BadRequest, "EMPTY_AUDIO_STREAM"),
    40044: ErrorCode(BadRequest, "INVALID_AUDIO_FORMAT"),
    # -- limits ----------------------------------------------------------------------------
    400123: ErrorCode(RateLimited, "EXCEED_RATE_LIMIT"),
    # -- v3 string codes -------------------------------------------------------------------
    "unauthorized": ErrorCode(InvalidCredentials, "unauthorized"),
    "forbidden": ErrorCode(InvalidCredentials, "forbidden"),
    "resource_access_denied": ErrorCode(InvalidCredentials, "resource_access_denied"),
    "insufficient_credit": ErrorCode(QuotaExhausted, "insufficient_credit"),
}

#: Codes that mean "the key is valid but may not do this", as opposed to "the key is wrong".
PERMISSION_CODES: frozenset[int | str] = frozenset(
    {400573, 400562, "forbidden", "resource_access_denied"}
)

#: HeyGen's refusal for keys without ``user:read``: "missing user-read to execute this operation".
_MISSING_USER_READ = re.compile(r"missing[\s_-]*user[\s_:-]*read", re.IGNORECASE)
_PERMISSION_WORDS = re.compile(r"\bscopes?\b|permission", re.IGNORECASE)
_QUOTA_WORDS = re.compile(r"credit|quota|balance|insufficient|upgrade", re.IGNORECASE)


# -- input and output models ------------------------------------------------------------------


class HeyGenVideoRequest(BaseModel):
    """One single-scene avatar video: a script spoken by an avatar or a talking photo."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    script: str = Field(min_length=1, description="The text the character speaks.")
    avatar_id: str | None = Field(default=None, min_length=1)
    talking_photo_id: str | None = Field(default=None, min_length=1)
    voice_id: str = Field(min_length=1)
    speed: float | None = Field(default=None, ge=0.5, le=1.5)
    background_color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}$")
    width: int | None = Field(default=None, gt=0, le=4096)
    height: int | None = Field(default=None, gt=0, le=4096)
    title: str | None = Field(default=None, max_length=500)
    caption: bool | None = None
    callback_id: str | None = Field(default=None, max_length=500)
    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://\S+$",
        description=(
            "Where HeyGen POSTs the completion event; sent as callback_url as HeyGen's n8n "
            "node does (UNCONFIRMED in the v2 docs)."
        ),
    )
    test: bool | None = None

    @model_validator(mode="after")
    def _one_character_and_whole_dimension(self) -> HeyGenVideoRequest:
        if (self.avatar_id is None) == (self.talking_photo_id is None):
            raise ValueError("give exactly one of avatar_id or talking_photo_id")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        return self

    def character(self) -> dict[str, Any]:
        if self.avatar_id is not None:
            return {"type": "avatar", "avatar_id": self.avatar_id, "avatar_style": "normal"}
        return {"type": "talking_photo", "talking_photo_id": self.talking_photo_id}

    def voice(self) -> dict[str, Any]:
        voice: dict[str, Any] = {
            "type": "text",
            "voice_id": self.voice_id,
            "input_text": self.script,
        }
        if self.speed is not None:
            voice["speed"] = self.speed
        return voice

    def to_body(self) -> dict[str, Any]:
        """The ``POST /v2/video/generate`` body; optional fields are sent only when given."""
        scene: dict[str, Any] = {"character": self.character(), "voice": self.voice()}
        if self.background_color is not None:
            scene["background"] = {"type": "color", "value": self.background_color}
        body: dict[str, Any] = {"video_inputs": [scene]}
        if self.width is not None and self.height is not None:
            body["dimension"] = {"width": self.width, "height": self.height}
        optional = {
            "title": self.title,
            "caption": self.caption,
            "callback_id": self.callback_id,
            "callback_url": self.callback_url,
            "test": self.test,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    def to_v3_body(self) -> dict[str, Any]:
        """The ``POST /v3/videos`` body: one flat object, optional fields only when given.

        Field names follow HeyGen's own n8n node (v3). v3 renders every kind of character
        (studio avatars, photo avatars, talking photos) from an ``avatar_id`` look id, so a
        talking photo id goes there too (UNCONFIRMED for legacy talking-photo ids).
        """
        body: dict[str, Any] = {
            "type": "avatar",
            "avatar_id": self.avatar_id or self.talking_photo_id,
            "script": self.script,
            "voice_id": self.voice_id,
        }
        if self.speed is not None:
            body["voice_settings"] = {"speed": self.speed}
        if self.background_color is not None:
            body["background"] = {"type": "color", "value": self.background_color}
        if self.width is not None and self.height is not None:
            body["aspect_ratio"] = "9:16" if self.height > self.width else "16:9"
            body["resolution"] = "1080p" if min(self.width, self.height) >= 1080 else "720p"
        optional = {
            "title": self.title,
            "enable_caption": self.caption,
            "callback_id": self.callback_id,
            "callback_url": self.callback_url,
            "test": self.test,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body


AvatarKind = Literal["avatar", "talking_photo", "photo_avatar"]


class AvatarsInput(ExposedInput):
    """Filters for :meth:`HeyGen.avatars`; all optional, all case-insensitive."""

    gender: str | None = Field(default=None, max_length=20)
    search: str | None = Field(default=None, max_length=200, description="In name or id.")
    kind: AvatarKind | None = None
    include_public: bool = Field(
        default=True, description="List HeyGen's public (stock) avatars too; False: yours only."
    )


class Avatar(BaseModel):
    """An avatar or a talking photo; ``kind`` says which id field to render it with."""

    id: str
    name: str
    kind: AvatarKind
    gender: str | None = None
    preview_image_url: str | None = None
    preview_video_url: str | None = None
    premium: bool = False
    public: bool | None = Field(default=None, description="A HeyGen stock avatar (None: unknown).")
    default_voice_id: str | None = None


class VoicesInput(ExposedInput):
    """Filters for :meth:`HeyGen.voices`; ``language`` is HeyGen's name, e.g. ``English``."""

    language: str | None = Field(default=None, max_length=100)
    gender: str | None = Field(default=None, max_length=20)


class Voice(BaseModel):
    id: str
    name: str
    language: str | None = None
    gender: str | None = None
    preview_audio_url: str | None = None
    supports_pause: bool = False
    supports_emotion: bool = False


# -- error bodies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeyGenProblem:
    """The vendor's code and message, whichever of the three body shapes carried them."""

    code: int | str | None
    message: str
    param: str | None = None
    doc_url: str | None = None


class WebhookEndpoint(BaseModel):
    """A registered HeyGen webhook endpoint; ``secret`` signs every event (shown only once)."""

    id: str
    url: str
    secret: str = Field(repr=False)
    events: list[str] = Field(default_factory=list)
    status: str | None = None


class WebhookInput(BaseModel):
    """What to register: an https URL and the events to send there (default: video done)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://\S+$", max_length=2000)
    events: list[str] = Field(default_factory=lambda: list(VIDEO_EVENTS))


def _normal_code(raw: Any) -> int | str | None:
    """Codes arrive as ints or strings ("40009"); digits become ints, text is lower-cased."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        return int(text) if text.isdigit() else text.lower()
    return None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def read_problem(response: httpx.Response) -> HeyGenProblem | None:
    """The error in a response body, or ``None`` when the body reports no error."""
    body = _json_object(response)
    if body is None:
        return None
    error = body.get("error")
    if isinstance(error, dict) and error:
        message = error.get("message") or error.get("detail") or "error"
        return HeyGenProblem(
            _normal_code(error.get("code")),
            str(message),
            param=_text(error.get("param")),
            doc_url=_text(error.get("doc_url")),
        )
    if isinstance(error, str) and error:
        return HeyGenProblem(_normal_code(body.get("code")), error)
    code = _normal_code(body.get("code"))
    if code is not None and code != LEGACY_SUCCESS_CODE:
        return HeyGenProblem(code, str(body.get("message") or "error"))
    return None


def _redact(text: str, response: httpx.Response) -> str:
    """Remove the request's API key from vendor text, in case the vendor echoed it."""
    try:
        secret = response.request.headers.get(AUTH_HEADER)
    except RuntimeError:  # a response built without a request
        secret = None
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return text[:500]


def _body_error_message(response: httpx.Response) -> str:
    text = response.text.strip()
    return text[:300] or response.reason_phrase or "error"


def is_missing_scope(exc: ProviderError) -> bool:
    """Whether an auth failure says the key lacks a permission rather than being wrong."""
    return isinstance(exc, InvalidCredentials) and bool(exc.details.get("missing_scope"))


# -- the provider -----------------------------------------------------------------------------


@third_party(
    identifier="heygen",
    title="HeyGen",
    description="AI avatar, photo-avatar and talking-photo videos from a script (API v2 or v3).",
    category="video",
    fields=[
        api_key_field(help="HeyGen > Settings > API. Sent as the X-Api-Key header."),
        CredentialField(
            "api_version",
            "API version",
            "select",
            required=False,
            options=API_VERSIONS,
            # No stored default: credentials saved without it keep meaning v2 (api_version()).
            help="v2: the legacy API (used when empty). v3: HeyGen's current API.",
        ),
    ],
)
class HeyGen(RenderProvider):
    """HeyGen client: identity, renders, job polling, avatar and voice catalogues, webhooks."""

    default_base_url = "https://api.heygen.com"
    reference_field = "callback_id"

    # -- auth and version ------------------------------------------------------------------

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {AUTH_HEADER: _api_key(credentials, self.identifier)}

    @staticmethod
    def api_version(credentials: Mapping[str, str]) -> ApiVersion:
        """The connection's API version: the ``api_version`` field, ``"v2"`` when absent."""
        raw = credentials.get("api_version")
        value = raw.strip().lower() if isinstance(raw, str) and raw.strip() else DEFAULT_API_VERSION
        if value == "v2":
            return "v2"
        if value == "v3":
            return "v3"
        raise InvalidInput(
            "unknown HeyGen API version",
            {"api_version": f"must be one of: {', '.join(API_VERSIONS)}"},
        )

    # -- contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """Identify the account; keys without ``user:read`` are proved by another cheap call."""
        v3 = self.api_version(credentials) == "v3"
        try:
            body = await self.get_json("/v3/users/me" if v3 else "/v1/user/me", credentials)
        except InvalidCredentials as exc:
            if not is_missing_scope(exc):
                raise
            if v3:
                await self.get_json("/v3/avatars", credentials, params={"limit": 1})
            else:
                await self.get_json("/v2/user/remaining_quota", credentials)
            return self._anonymous_account(credentials)
        account = account_from_user(_data(body))
        return account or self._anonymous_account(credentials)

    async def send_data(
        self, credentials: Mapping[str, str], data: HeyGenVideoRequest | Mapping[str, Any]
    ) -> RenderJob:
        """Start a render; returns the queued job (poll it with :meth:`wait_for_job`).

        The POST is paid, so it is repeated only when HeyGen certainly did not act on it
        (connection refused, 429); see ``ThirdPartyProvider.request``.
        """
        video = coerce_video_request(data)
        if self.api_version(credentials) == "v3":
            body = await self.post_json("/v3/videos", credentials, video.to_v3_body())
        else:
            body = await self.post_json("/v2/video/generate", credentials, video.to_body())
        video_id = _data(body).get("video_id") or _data(body).get("id")
        if not isinstance(video_id, str) or not video_id:
            # Not retried and not a fallback case: HeyGen may have started (and billed) it.
            raise ProviderError(
                "accepted the render but returned no video_id", provider=self.identifier
            )
        return RenderJob(
            provider=self.identifier, id=video_id, status=JobStatus.QUEUED, raw=_data(body)
        )

    # -- jobs ------------------------------------------------------------------------------

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """The render's current state (``/v1/video_status.get`` or ``/v3/videos/{id}``)."""
        if not job_id or not job_id.strip():
            raise InvalidInput("a HeyGen video id is required", {"job_id": "required"})
        video_id = job_id.strip()
        if self.api_version(credentials) == "v3":
            body = await self.get_json(f"/v3/videos/{quote(video_id, safe='')}", credentials)
        else:
            body = await self.get_json(
                "/v1/video_status.get", credentials, params={"video_id": video_id}
            )
        return job_from_status(_data(body), job_id=video_id, provider=self.identifier)

    async def find_submitted(
        self, credentials: Mapping[str, str], reference: str, since: float
    ) -> str | None:
        """The video started at or after ``since`` whose ``callback_id`` is ``reference``.

        ``GET /v1/video.list`` (docs.heygen.com/reference/video-list; newest first and the
        item fields are UNCONFIRMED beyond HeyGen's changelog) names the candidates, and
        ``callback_id`` is read from each one's ``/v1/video_status.get``; both are free reads,
        used for v2 and v3 connections alike.
        """
        token: str | None = None
        for _ in range(LOOKUP_MAX_PAGES):
            params: dict[str, Any] = {"limit": LOOKUP_PAGE_SIZE}
            if token:
                params["token"] = token
            data = _data(await self.get_json("/v1/video.list", credentials, params=params))
            videos = _list(data, "videos")
            recent = [v for v in videos if not _older(v.get("created_at"), since)]
            for video in recent:
                video_id = _text(video.get("video_id"))
                if video_id is None:
                    continue
                status = await self.get_json(
                    "/v1/video_status.get", credentials, params={"video_id": video_id}
                )
                if _data(status).get("callback_id") == reference:
                    return video_id
            token = _text(data.get("token"))
            if token is None or not recent:
                return None
        raise ProviderError(
            f"more than {LOOKUP_MAX_PAGES * LOOKUP_PAGE_SIZE} recent videos to search",
            provider=self.identifier,
        )

    # -- webhooks --------------------------------------------------------------------------

    async def register_webhook(
        self, credentials: Mapping[str, str], endpoint: WebhookInput | Mapping[str, Any]
    ) -> WebhookEndpoint:
        """Register a URL for completion events; keep the returned ``secret`` (shown once).

        v2: ``POST /v1/webhook/endpoint.add``; v3: ``POST /v3/webhooks/endpoints``.
        """
        spec = endpoint if isinstance(endpoint, WebhookInput) else _webhook_input(endpoint)
        path = (
            "/v3/webhooks/endpoints"
            if self.api_version(credentials) == "v3"
            else "/v1/webhook/endpoint.add"
        )
        body = await self.post_json(path, credentials, spec.model_dump())
        return webhook_endpoint_from(_data(body), provider=self.identifier)

    # -- exposed functions -----------------------------------------------------------------

    @expose
    async def avatars(self, credentials: Mapping[str, str], params: AvatarsInput) -> list[Avatar]:
        """Avatars, photo avatars and talking photos (``kind`` tells them apart), filtered.

        Public (stock) avatars are included unless ``include_public`` is false.
        """
        if self.api_version(credentials) == "v3":
            query = {} if params.include_public else {"ownership": "private"}
            items = await self._v3_items("/v3/avatars", credentials, query)
            found = [avatar_from_v3(item) for item in items]
        else:
            data = _data(await self.get_json("/v2/avatars", credentials))
            found = [avatar_from_vendor(item) for item in _list(data, "avatars")]
            found += [talking_photo_from_vendor(item) for item in _list(data, "talking_photos")]
        return [a for a in found if a is not None and _avatar_matches(a, params)]

    @expose
    async def voices(self, credentials: Mapping[str, str], params: VoicesInput) -> list[Voice]:
        """Voices, optionally filtered by language and gender."""
        if self.api_version(credentials) == "v3":
            items = await self._v3_items("/v3/voices", credentials, {})
            found = [voice_from_vendor(item) for item in items]
        else:
            data = _data(await self.get_json("/v2/voices", credentials))
            found = [voice_from_vendor(item) for item in _list(data, "voices")]
        return [v for v in found if v is not None and _voice_matches(v, params)]

    async def _v3_items(
        self, path: str, credentials: Mapping[str, str], query: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Every item of a v3 list, following ``next_token`` while ``has_more``."""

        async def fetch(page: dict[str, Any]) -> Any:
            params = {"limit": V3_PAGE_SIZE, **query, **page}
            return await self.get_json(path, credentials, params=params)

        paginator = CursorPaginator(
            cursor_param="token",
            next_cursor=_v3_next_token,
            items=_v3_page_items,
            max_pages=1000,
        )
        return await paginator.collect(fetch)

    # -- errors ----------------------------------------------------------------------------

    def is_error(self, response: httpx.Response) -> bool:
        """HTTP errors, and 200s whose legacy ``code`` is not 100 or whose ``error`` is set."""
        if response.status_code >= 400:
            return True
        return read_problem(response) is not None

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map status, body code and message once: see :func:`classify_error`."""
        status = response.status_code
        problem = read_problem(response) or HeyGenProblem(None, _body_error_message(response))
        message = _redact(problem.message, response)
        if problem.param:
            message = f"{message} (param: {_redact(problem.param, response)[:100]})"
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": problem.code}
        kind = classify_error(status, problem.code, message)
        if kind is None:
            error = self.error_from_status(response, message=message, code=problem.code)
        elif kind is RateLimited:
            error = RateLimited(message, retry_after=self.retry_after(response), **kw)
        else:
            error = kind(message, **kw)
        if isinstance(error, InvalidCredentials):
            error.details["missing_scope"] = lacks_permission(status, problem.code, message)
        if problem.doc_url:
            error.details["doc_url"] = problem.doc_url
        return error

    # -- helpers ---------------------------------------------------------------------------

    def _anonymous_account(self, credentials: Mapping[str, str]) -> AccountInfo:
        key = _api_key(credentials, self.identifier)
        return AccountInfo(id=self.fingerprint(key), name=credentials.get("label") or self.title)


# -- pure helpers (no I/O) --------------------------------------------------------------------


def _api_key(credentials: Mapping[str, str], provider: str) -> str:
    key = credentials.get("api_key")
    if not isinstance(key, str) or not key.strip():
        raise InvalidCredentials("no API key is configured", provider=provider)
    return key.strip()


def classify_error(status: int, code: int | str | None, message: str) -> type[ProviderError] | None:
    """The error class for a HeyGen failure, or ``None`` to use the plain status mapping.

    A 5xx is always transient. The "missing user-read" refusal is an auth failure whatever its
    status. A 429 (or the legacy rate-limit code) is a quota problem when its code or words say
    so (HeyGen uses 429 for both), else a rate limit. Then the documented code decides.
    """
    if status >= 500:
        return Transient
    if _MISSING_USER_READ.search(message):
        return InvalidCredentials
    known = HEYGEN_ERROR_CODES.get(code) if code is not None else None
    kind = known.kind if known else None
    if status == 429 or kind is RateLimited:
        quota = kind is QuotaExhausted or bool(_QUOTA_WORDS.search(message))
        return QuotaExhausted if quota else RateLimited
    return kind


def lacks_permission(status: int, code: int | str | None, message: str) -> bool:
    """Whether an auth failure means "valid key, missing permission" rather than a wrong key.

    Generous on purpose: ``check_connection`` then proves the key with another call, so a
    wrong key still ends as ``InvalidCredentials``.
    """
    if code in PERMISSION_CODES or status == 403:
        return True
    return bool(_MISSING_USER_READ.search(message) or _PERMISSION_WORDS.search(message))


def _data(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _list(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _older(created_at: Any, since: float) -> bool:
    """Whether a listed video was created before ``since`` (unknown times are not older)."""
    return isinstance(created_at, int | float) and created_at < since


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def coerce_video_request(data: HeyGenVideoRequest | Mapping[str, Any]) -> HeyGenVideoRequest:
    """Accept the model or a plain dict; bad input is ``InvalidInput`` with per-field errors."""
    if isinstance(data, HeyGenVideoRequest):
        return data
    try:
        return HeyGenVideoRequest.model_validate(data)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid HeyGen video request", errors) from None


def account_from_user(user: Mapping[str, Any]) -> AccountInfo | None:
    """``/v1/user/me`` data -> AccountInfo(username, "first last" | email | username)."""
    username = _text(user.get("username"))
    if username is None:
        return None
    full_name = " ".join(
        filter(None, (_text(user.get("first_name")), _text(user.get("last_name"))))
    )
    return AccountInfo(id=username, name=full_name or _text(user.get("email")) or username)


def job_from_status(
    data: Mapping[str, Any], *, job_id: str, provider: str, now: datetime | None = None
) -> RenderJob:
    """Status data (``/v1/video_status.get`` or ``/v3/videos/{id}``) -> RenderJob.

    Unknown statuses count as running. A v3 failure may come as ``failure_code`` and
    ``failure_message`` instead of an ``error`` object (UNCONFIRMED); both are read.
    """
    vendor_status = (_text(data.get("status")) or "").lower()
    status = VENDOR_STATUS.get(vendor_status, JobStatus.RUNNING)
    result_url = _text(data.get("video_url")) if status is JobStatus.SUCCEEDED else None
    issued = now or datetime.now(UTC)
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    if not error and (data.get("failure_message") or data.get("failure_code")):
        error = {"message": data.get("failure_message"), "code": data.get("failure_code")}
    duration = data.get("duration")
    return RenderJob(
        provider=provider,
        id=_text(data.get("id")) or _text(data.get("video_id")) or job_id,
        status=status,
        vendor_status=vendor_status,
        progress=1.0 if status is JobStatus.SUCCEEDED else None,
        result_url=result_url,
        result_expires_at=issued + RESULT_URL_LIFETIME if result_url else None,
        thumbnail_url=_text(data.get("thumbnail_url")),
        duration_seconds=float(duration) if isinstance(duration, int | float) else None,
        failure_reason=_failure_reason(error) if status is JobStatus.FAILED else None,
        failure_code=_failure_code(error) if status is JobStatus.FAILED else None,
        raw=dict(data),
    )


def _failure_reason(error: Mapping[str, Any]) -> str:
    message = _text(error.get("message"))
    detail = _text(error.get("detail"))
    if message and detail and detail != message:
        return f"{message}: {detail}"
    return message or detail or "HeyGen reported the render as failed"


def _failure_code(error: Mapping[str, Any]) -> str | None:
    code = error.get("code")
    return str(code) if code not in (None, "") else None


def avatar_from_vendor(item: Mapping[str, Any]) -> Avatar | None:
    avatar_id = _text(item.get("avatar_id"))
    if avatar_id is None:
        return None
    return Avatar(
        id=avatar_id,
        name=_text(item.get("avatar_name")) or avatar_id,
        kind="avatar",
        gender=_text(item.get("gender")),
        preview_image_url=_text(item.get("preview_image_url")),
        preview_video_url=_text(item.get("preview_video_url")),
        premium=item.get("premium") is True,
        public=item.get("is_public") if isinstance(item.get("is_public"), bool) else None,
    )


def avatar_from_v3(item: Mapping[str, Any]) -> Avatar | None:
    """A ``GET /v3/avatars`` item -> Avatar.

    ``avatar_type`` (``studio_avatar``, ``photo_avatar``, ``talking_photo``) and ``ownership``
    are read when present (UNCONFIRMED on groups); without them it is a plain avatar.
    """
    avatar_id = _text(item.get("id")) or _text(item.get("avatar_id"))
    if avatar_id is None:
        return None
    kinds: dict[str, AvatarKind] = {
        "photo_avatar": "photo_avatar",
        "talking_photo": "talking_photo",
    }
    ownership = (_text(item.get("ownership")) or "").lower()
    public = item.get("is_public")
    return Avatar(
        id=avatar_id,
        name=_text(item.get("name")) or avatar_id,
        kind=kinds.get((_text(item.get("avatar_type")) or "").lower(), "avatar"),
        gender=_text(item.get("gender")),
        preview_image_url=_text(item.get("preview_image_url")),
        preview_video_url=_text(item.get("preview_video_url")),
        premium=item.get("premium") is True,
        public=public
        if isinstance(public, bool)
        else ({"public": True, "private": False}.get(ownership)),
        default_voice_id=_text(item.get("default_voice_id")),
    )


def _v3_page_items(body: Any) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _v3_next_token(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("has_more") is not True:
        return None
    return _text(body.get("next_token"))


def _webhook_input(data: Mapping[str, Any]) -> WebhookInput:
    try:
        return WebhookInput.model_validate(dict(data))
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid HeyGen webhook endpoint", errors) from None


def webhook_endpoint_from(data: Mapping[str, Any], *, provider: str) -> WebhookEndpoint:
    """The endpoint HeyGen registered; without an id or a secret it is useless to us."""
    endpoint_id = _text(data.get("endpoint_id")) or _text(data.get("id"))
    secret = _text(data.get("secret"))
    if endpoint_id is None or secret is None:
        raise ProviderError(
            "registered the webhook but returned no id or secret", provider=provider
        )
    events = data.get("events")
    return WebhookEndpoint(
        id=endpoint_id,
        url=_text(data.get("url")) or "",
        secret=secret,
        events=[str(e) for e in events] if isinstance(events, list) else [],
        status=_text(data.get("status")),
    )


def talking_photo_from_vendor(item: Mapping[str, Any]) -> Avatar | None:
    photo_id = _text(item.get("talking_photo_id"))
    if photo_id is None:
        return None
    return Avatar(
        id=photo_id,
        name=_text(item.get("talking_photo_name")) or photo_id,
        kind="talking_photo",
        preview_image_url=_text(item.get("preview_image_url")),
    )


def voice_from_vendor(item: Mapping[str, Any]) -> Voice | None:
    voice_id = _text(item.get("voice_id"))
    if voice_id is None:
        return None
    return Voice(
        id=voice_id,
        name=_text(item.get("name")) or voice_id,
        language=_text(item.get("language")),
        gender=_text(item.get("gender")),
        preview_audio_url=_text(item.get("preview_audio")) or _text(item.get("preview_audio_url")),
        supports_pause=item.get("support_pause") is True,
        supports_emotion=item.get("emotion_support") is True,
    )


def _same(wanted: str | None, actual: str | None) -> bool:
    """No filter matches everything; otherwise a case-insensitive equality."""
    if not wanted or not wanted.strip():
        return True
    return actual is not None and actual.casefold() == wanted.strip().casefold()


def _avatar_matches(avatar: Avatar, params: AvatarsInput) -> bool:
    if params.kind is not None and avatar.kind != params.kind:
        return False
    if not params.include_public and avatar.public is True:
        return False
    if not _same(params.gender, avatar.gender):
        return False
    needle = (params.search or "").strip().casefold()
    return not needle or needle in avatar.name.casefold() or needle in avatar.id.casefold()


def _voice_matches(voice: Voice, params: VoicesInput) -> bool:
    return _same(params.language, voice.language) and _same(params.gender, voice.gender)
