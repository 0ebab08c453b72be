"""HeyGen emulator: the legacy v1/v2 routes and the v3 routes, with HeyGen's own shapes.

Follows ``reference/provider-contracts-media-automation.md`` section 1, not the client:

- ``X-Api-Key``: keys starting ``hg_`` are valid; ``hg_noscope_...`` keys lack ``user:read``
  (``/v1/user/me`` refuses them, everything else works); anything else gets HeyGen's 401.
- ``POST /v2/video/generate`` is a paid call and starts a clock-driven job; a script containing
  ``[fail]`` makes the job fail with an error body. ``GET /v1/video_status.get`` reports
  ``pending`` -> ``processing`` -> ``completed`` | ``failed`` from the job's phase.
- ``GET /v1/video.list`` lists the key's videos, newest first, ``limit``/``token`` pages
  (``{video_id, video_title, status, created_at, type}``; ``callback_id`` only in the status).
- Result URLs point at ``GET /heygen/media/{video_id}.mp4`` (a tiny fake MP4, no auth: real
  HeyGen result URLs are pre-signed).

- v3: ``GET /v3/users/me``, ``GET /v3/avatars`` (public studio avatars, private photo avatars
  and talking photos; ``ownership`` filter; ``limit``/``token`` pages with ``has_more`` and
  ``next_token``), ``GET /v3/voices`` (paged), ``POST /v3/videos``, ``GET /v3/videos/{id}``.
- Webhooks: ``POST /v1/webhook/endpoint.add`` and ``POST /v3/webhooks/endpoints`` register a URL
  for the key and return its ``secret``. When a render ends, every endpoint of the key gets
  ``{event_type: "avatar_video.success"|"avatar_video.fail", event_data: {...}}`` signed with
  ``X-HeyGen-Signature`` (hex HMAC-SHA256 of the raw body under the endpoint secret); a render's
  own ``callback_url`` gets the same event, signed when it is a registered endpoint's URL.
- ``state.store("heygen")["url_ttl_seconds"]``: when set, result URLs carry ``expires`` and
  answer 403 (like an expired pre-signed URL) once past it; re-polling re-signs them.

Error bodies: legacy routes answer ``{code, message}``; v2 routes ``{data: null, error: {...}}``;
v3 routes ``{error: {code, message, param, doc_url}}``.
The 401 shapes (legacy code 40009; v2 code ``internal_error`` with "Unauthorized") and the
"missing user-read" refusal follow what HeyGen users report; their exact status is UNCONFIRMED
(403 here, which is what the v3 docs give for a valid key without permission).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox import callbacks
from arkyra.sandbox.state import SandboxJob, SandboxState

IDENTIFIER = "heygen"

VALID_KEY_PREFIX = "hg_"
NO_SCOPE_KEY_PREFIX = "hg_noscope_"
FAIL_MARKER = "[fail]"
REMAINING_QUOTA = 3600

#: ``ftyp`` + ``free`` boxes: enough for a player or ``file`` to call it an MP4.
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"
FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"

AVATARS: tuple[dict[str, Any], ...] = (
    {"avatar_id": "Abigail_expressive_2024112501", "avatar_name": "Abigail (Upper Body)",
     "gender": "female", "premium": False},
    {"avatar_id": "Adriana_Business_Front_public", "avatar_name": "Adriana in Business",
     "gender": "female", "premium": False},
    {"avatar_id": "Annie_expressive4_public", "avatar_name": "Annie Casual",
     "gender": "female", "premium": True},
    {"avatar_id": "Brandon_Office_Sitting_Front_public", "avatar_name": "Brandon Office",
     "gender": "male", "premium": False},
    {"avatar_id": "Daniel_standing_public", "avatar_name": "Daniel Standing",
     "gender": "male", "premium": False},
    {"avatar_id": "Kenji_sitting_public", "avatar_name": "Kenji Sitting",
     "gender": "male", "premium": True},
)  # fmt: skip

SIGNATURE_HEADER = "X-HeyGen-Signature"
DOC_URL = "https://developers.heygen.com/docs/error-codes"

PHOTO_AVATARS: tuple[dict[str, Any], ...] = (
    {"photo_avatar_id": "pa_3c9d8e7f6a5b", "photo_avatar_name": "Team Lead Photo Avatar",
     "gender": "female"},
    {"photo_avatar_id": "pa_4d0e9f8a7b6c", "photo_avatar_name": "Host Photo Avatar",
     "gender": "male"},
)  # fmt: skip

TALKING_PHOTOS: tuple[dict[str, Any], ...] = (
    {"talking_photo_id": "tp_5f0c1a2b3c4d", "talking_photo_name": "Founder Portrait"},
    {"talking_photo_id": "tp_6a1d2e3f4a5b", "talking_photo_name": "Support Agent Photo"},
    {"talking_photo_id": "tp_7b2e3f4a5b6c", "talking_photo_name": "Annie Photo"},
)

VOICES: tuple[dict[str, Any], ...] = (
    {"voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54", "name": "Rachel - Calm",
     "language": "English", "gender": "female", "support_pause": True, "emotion_support": True},
    {"voice_id": "1bd001e7e50f421d891986aad5158bc8", "name": "Paul - Natural",
     "language": "English", "gender": "male", "support_pause": True, "emotion_support": False},
    {"voice_id": "131a436c47064f708210df6628ef8f32", "name": "Amber - Friendly",
     "language": "English", "gender": "female", "support_pause": False, "emotion_support": True},
    {"voice_id": "d7bbcdd6964c47bdaae26decade4a933", "name": "Elena - Warm",
     "language": "Spanish", "gender": "female", "support_pause": True, "emotion_support": False},
    {"voice_id": "a04d81d19afd436db611060682276331", "name": "Mateo - Clear",
     "language": "Spanish", "gender": "male", "support_pause": True, "emotion_support": False},
    {"voice_id": "f38a635bee7a4d1f9b0a654a31d050d2", "name": "Lena - Bright",
     "language": "German", "gender": "female", "support_pause": False, "emotion_support": False},
    {"voice_id": "b9e3a1f0c7d24e6f8a1b2c3d4e5f6a7b", "name": "Yuki - Soft",
     "language": "Japanese", "gender": "female", "support_pause": True, "emotion_support": False},
)  # fmt: skip

#: SandboxJob phases -> HeyGen statuses.
PHASE_STATUS = {
    "queued": "pending",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


# -- HeyGen-shaped bodies ---------------------------------------------------------------------


def legacy_error(status: int, code: int, message: str) -> JSONResponse:
    """The legacy v1 shape: ``{code, message}`` (``code`` 100 means success)."""
    return JSONResponse({"code": code, "data": None, "message": message}, status_code=status)


def v2_error(status: int, code: str | int, message: str) -> JSONResponse:
    """The v2 shape: ``{data: null, error: {code, message}}``."""
    return JSONResponse(
        {"data": None, "error": {"code": code, "message": message}}, status_code=status
    )


def legacy_ok(data: Any) -> JSONResponse:
    return JSONResponse({"code": 100, "data": data, "message": "Success"})


def v2_ok(data: Any) -> JSONResponse:
    return JSONResponse({"error": None, "data": data})


def v3_error(status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    """The v3 shape: ``{error: {code, message, param, doc_url}}``."""
    error = {"code": code, "message": message, "param": param, "doc_url": DOC_URL}
    return JSONResponse({"error": error}, status_code=status)


def sign(secret: str, body: bytes) -> str:
    """HeyGen's webhook signature: hex HMAC-SHA256 of the raw body under the endpoint secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """HeyGen's body for an injected fault (the fault layer does not know the route)."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    if kind == "rate_limit":
        response = legacy_error(429, 400123, "Exceed rate limit")
    elif status >= 500:
        response = v2_error(status, "internal_error", "Internal server error, please retry")
    else:
        response = v2_error(status, "invalid_parameter", f"Request failed with status {status}")
    if headers:
        response.headers.update(headers)
    return response


# -- auth -------------------------------------------------------------------------------------


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    return key if key.startswith(VALID_KEY_PREFIX) else None


def unauthorized(legacy: bool) -> JSONResponse:
    if legacy:
        return legacy_error(401, 40009, "Invalid credentials provided")
    return v2_error(401, "internal_error", "Unauthorized")


def _account(key: str) -> dict[str, str]:
    """A stable fake identity derived from the key (never the key itself)."""
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    return {
        "username": f"sandbox_{tag}",
        "email": f"sandbox+{tag}@example.com",
        "first_name": "Sandbox",
        "last_name": "Creator",
    }


# -- routes -----------------------------------------------------------------------------------


def routes(state: SandboxState) -> list[BaseRoute]:
    """The HeyGen routes, bound to ``state`` (mounted at ``/heygen`` by the sandbox app)."""

    async def user_me(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return unauthorized(legacy=True)
        if key.startswith(NO_SCOPE_KEY_PREFIX):
            return legacy_error(403, 400573, "missing user-read to execute this operation.")
        return legacy_ok(_account(key))

    async def remaining_quota(request: Request) -> Response:
        if _api_key(request) is None:
            return unauthorized(legacy=False)
        return v2_ok(
            {"remaining_quota": REMAINING_QUOTA, "details": {"api": REMAINING_QUOTA, "seat": 0}}
        )

    async def avatars(request: Request) -> Response:
        if _api_key(request) is None:
            return unauthorized(legacy=False)
        return v2_ok(
            {
                "avatars": [_with_previews(request, a, "avatar_id") for a in AVATARS],
                "talking_photos": [
                    _with_previews(request, p, "talking_photo_id") for p in TALKING_PHOTOS
                ],
            }
        )

    async def voices(request: Request) -> Response:
        if _api_key(request) is None:
            return unauthorized(legacy=False)
        listed = [{**v, "preview_audio": _media_url(request, v["voice_id"], "mp3")} for v in VOICES]
        return v2_ok({"voices": listed})

    async def generate(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return unauthorized(legacy=False)
        try:
            body = await request.json()
        except ValueError:
            return v2_error(400, "invalid_parameter", "request body is not valid JSON")
        problem, script = _check_generate(body)
        if problem:
            return v2_error(400, "invalid_parameter", problem)
        video_id = start(request, key, body, script, "paid POST /v2/video/generate")
        return v2_ok({"video_id": video_id})

    def start(request: Request, key: str, body: dict[str, Any], script: str, route: str) -> str:
        """Start a paid, clock-driven render and schedule its completion callbacks."""
        video_id = f"{state.rng.getrandbits(128):032x}"  # seeded state -> reproducible ids
        state.count(IDENTIFIER, route, paid=True)
        job = state.new_job(
            IDENTIFIER,
            video_id,
            fail=FAIL_MARKER in script,
            marker_failure=FAIL_MARKER in script,
            callback_id=body.get("callback_id"),
            owner=_owner(key),
            title=body.get("title"),
            words=len(script.split()),
            created_at=int(time.time()),
            media_root=_media_root(request),
        )
        _schedule_callbacks(state, key, job, body.get("callback_url"))
        return video_id

    async def video_status(request: Request) -> Response:
        if _api_key(request) is None:
            return unauthorized(legacy=True)
        video_id = request.query_params.get("video_id", "")
        if not video_id:
            return legacy_error(400, 40001, "Missing required input parameters")
        job = state.job(IDENTIFIER, video_id)
        if job is None:
            return legacy_error(404, 40031, "Invalid video id")
        return legacy_ok(_status_data(state, job))

    async def video_list(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return unauthorized(legacy=True)
        try:
            limit = min(max(int(request.query_params.get("limit", "100")), 1), 100)
            offset = int(request.query_params.get("token") or 0)
        except ValueError:
            return legacy_error(400, 40001, "limit and token must be numbers")
        jobs = [j for j in state.store(IDENTIFIER).get("jobs", {}).values()
                if j.data.get("owner") == _owner(key)]  # fmt: skip
        jobs.sort(key=lambda j: j.created, reverse=True)
        page = jobs[offset : offset + limit]
        more = offset + limit < len(jobs)
        videos = [_list_entry(job) for job in page]
        return legacy_ok({"videos": videos, "token": str(offset + limit) if more else None})

    async def add_endpoint_v1(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return unauthorized(legacy=False)
        endpoint, problem = await _register(state, key, request)
        if problem:
            return v2_error(400, "invalid_parameter", problem)
        return v2_ok({**endpoint, "username": _account(key)["username"]})

    # -- v3 ------------------------------------------------------------------------------

    async def users_me_v3(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        if key.startswith(NO_SCOPE_KEY_PREFIX):
            return v3_error(403, "forbidden", "missing user-read to execute this operation.")
        return JSONResponse({"data": {**_account(key), "billing_type": "api"}})

    async def avatars_v3(request: Request) -> Response:
        if _api_key(request) is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        ownership = request.query_params.get("ownership")
        if ownership not in (None, "public", "private"):
            return v3_error(400, "invalid_parameter", "must be public or private", "ownership")
        items = [a for a in _v3_avatars(request) if ownership in (None, a["ownership"])]
        return _v3_page(request, items)

    async def voices_v3(request: Request) -> Response:
        if _api_key(request) is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        listed = [
            {**v, "preview_audio_url": _media_url(request, v["voice_id"], "mp3")} for v in VOICES
        ]
        return _v3_page(request, listed)

    async def create_video_v3(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        try:
            body = await request.json()
        except ValueError:
            return v3_error(400, "invalid_parameter", "request body is not valid JSON")
        problem, param = _check_v3_video(body)
        if problem:
            return v3_error(400, "invalid_parameter", problem, param)
        video_id = start(request, key, body, str(body["script"]), "paid POST /v3/videos")
        return JSONResponse({"data": {"video_id": video_id}})

    async def get_video_v3(request: Request) -> Response:
        if _api_key(request) is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        job = state.job(IDENTIFIER, request.path_params["video_id"])
        if job is None:
            return v3_error(404, "not_found", "Video not found", "video_id")
        data = _status_data(state, job)
        error = data.pop("error")
        data["failure_code"] = str(error["code"]) if error else None
        data["failure_message"] = error["message"] if error else None
        return JSONResponse({"data": data})

    async def add_endpoint_v3(request: Request) -> Response:
        key = _api_key(request)
        if key is None:
            return v3_error(401, "unauthorized", "Invalid API key")
        endpoint, problem = await _register(state, key, request)
        if problem:
            return v3_error(400, "invalid_parameter", problem, "url")
        return JSONResponse({"data": endpoint})

    async def media(request: Request) -> Response:
        video_id = request.path_params["video_id"]
        suffix = request.path_params["suffix"]
        if suffix == "mp3" and any(v["voice_id"] == video_id for v in VOICES):
            return Response(b"ID3\x03\x00\x00\x00\x00\x00\x00", media_type="audio/mpeg")
        if suffix == "jpg":
            return Response(FAKE_JPEG, media_type="image/jpeg")
        job = state.job(IDENTIFIER, video_id)
        rendered = job is not None and job.phase() == "succeeded"
        preview = any(a["avatar_id"] == video_id for a in AVATARS)
        if suffix != "mp4" or not (rendered or preview):
            return Response("Not Found", status_code=404, media_type="text/plain")
        if rendered and _expired(request):
            return Response(EXPIRED_XML, status_code=403, media_type="application/xml")
        return Response(FAKE_MP4, media_type="video/mp4")

    return [
        Route("/v1/user/me", user_me, methods=["GET"]),
        Route("/v2/user/remaining_quota", remaining_quota, methods=["GET"]),
        Route("/v2/avatars", avatars, methods=["GET"]),
        Route("/v2/voices", voices, methods=["GET"]),
        Route("/v2/video/generate", generate, methods=["POST"]),
        Route("/v1/video_status.get", video_status, methods=["GET"]),
        Route("/v1/video.list", video_list, methods=["GET"]),
        Route("/media/{video_id}.{suffix}", media, methods=["GET"]),
        Route("/v1/webhook/endpoint.add", add_endpoint_v1, methods=["POST"]),
        Route("/v3/users/me", users_me_v3, methods=["GET"]),
        Route("/v3/avatars", avatars_v3, methods=["GET"]),
        Route("/v3/voices", voices_v3, methods=["GET"]),
        Route("/v3/videos", create_video_v3, methods=["POST"]),
        Route("/v3/videos/{video_id}", get_video_v3, methods=["GET"]),
        Route("/v3/webhooks/endpoints", add_endpoint_v3, methods=["POST"]),
    ]


# -- helpers ----------------------------------------------------------------------------------


def _media_url(request: Request, name: str, suffix: str) -> str:
    """An absolute URL under this vendor's mount (``/heygen/media/...``)."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=f"{root}/media/{name}.{suffix}", query=""))


def _with_previews(request: Request, item: dict[str, Any], id_key: str) -> dict[str, Any]:
    previews = {"preview_image_url": _media_url(request, item[id_key], "jpg")}
    if id_key == "avatar_id":
        previews["preview_video_url"] = _media_url(request, item[id_key], "mp4")
    return {**item, **previews}


def _check_generate(body: Any) -> tuple[str | None, str]:
    """Validate a generate body like HeyGen does; returns (problem, script)."""
    inputs = body.get("video_inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return "video_inputs is required", ""
    scripts: list[str] = []
    for index, scene in enumerate(inputs):
        if not isinstance(scene, dict):
            return f"video_inputs[{index}] must be an object", ""
        problem = _check_character(scene.get("character")) or _check_voice(scene.get("voice"))
        if problem:
            return f"video_inputs[{index}]: {problem}", ""
        scripts.append(str(scene["voice"].get("input_text", "")))
    dimension = body.get("dimension")
    if dimension is not None and not (
        isinstance(dimension, dict)
        and all(isinstance(dimension.get(k), int) and dimension[k] > 0 for k in ("width", "height"))
    ):
        return "dimension needs positive integer width and height", ""
    return None, " ".join(scripts)


def _check_character(character: Any) -> str | None:
    if not isinstance(character, dict):
        return "character is required"
    kind = character.get("type")
    if kind == "avatar":
        known = {a["avatar_id"] for a in AVATARS}
        if character.get("avatar_id") not in known:
            return f"avatar {character.get('avatar_id')!r} not found"
        return None
    if kind == "talking_photo":
        known = {p["talking_photo_id"] for p in TALKING_PHOTOS}
        if character.get("talking_photo_id") not in known:
            return f"talking photo {character.get('talking_photo_id')!r} not found"
        return None
    return "character.type must be avatar or talking_photo"


def _check_voice(voice: Any) -> str | None:
    if not isinstance(voice, dict) or voice.get("type") != "text":
        return "voice.type must be text"
    if voice.get("voice_id") not in {v["voice_id"] for v in VOICES}:
        return f"voice {voice.get('voice_id')!r} not found"
    text = voice.get("input_text")
    if not isinstance(text, str) or not text.strip():
        return "voice.input_text is required"
    speed = voice.get("speed")
    if speed is not None and not (isinstance(speed, int | float) and 0.5 <= speed <= 1.5):
        return "voice.speed must be between 0.5 and 1.5"
    return None


def _status_data(state: SandboxState, job: SandboxJob) -> dict[str, Any]:
    """The ``data`` of ``/v1/video_status.get`` for a job in its current phase."""
    status = PHASE_STATUS[job.phase()]
    done = status == "completed"
    return {
        "id": job.id,
        "status": status,
        "video_url": _signed_video_url(state, job) if done else None,
        "thumbnail_url": f"{job.data['media_root']}/{job.id}.jpg" if done else None,
        "gif_url": None,
        "caption_url": None,
        "video_url_caption": None,
        "duration": round(max(1.0, job.data.get("words", 0) / 2.5), 3) if done else None,
        "callback_id": job.data.get("callback_id"),
        "created_at": job.data.get("created_at"),
        "error": _job_error(job) if status == "failed" else None,
    }


def _owner(key: str) -> str:
    """Which account a job belongs to, without keeping the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


#: ``/v1/video.list`` statuses (completed, processing, failed, draft) by job phase.
LIST_STATUS = {"queued": "processing", "running": "processing", "succeeded": "completed",
               "failed": "failed", "cancelled": "failed"}  # fmt: skip


def _list_entry(job: SandboxJob) -> dict[str, Any]:
    return {
        "video_id": job.id,
        "video_title": job.data.get("title") or "",
        "status": LIST_STATUS[job.phase()],
        "created_at": job.data.get("created_at"),
        "type": "GENERATED",
    }


def _job_error(job: SandboxJob) -> dict[str, Any]:
    if job.data.get("marker_failure"):
        return {
            "code": 40039,
            "message": "Invalid text detected",
            "detail": f"The script contains the sandbox failure marker {FAIL_MARKER}.",
        }
    return {
        "code": "internal_error",
        "message": "Video rendering failed",
        "detail": "The sandbox failed this render (job_failure_rate).",
    }


# -- v3, webhooks and expiring URLs -----------------------------------------------------------

EXPIRED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message></Error>"
)


def _media_root(request: Request) -> str:
    """``<scheme>://<host>/heygen/media``, as the client reached this emulator."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=f"{root}/media", query="")).rstrip("/")


def _signed_video_url(state: SandboxState, job: SandboxJob) -> str:
    """The result URL; with ``url_ttl_seconds`` set it carries an ``expires`` time."""
    url = f"{job.data['media_root']}/{job.id}.mp4"
    ttl = state.store(IDENTIFIER).get("url_ttl_seconds")
    if ttl is None:
        return url
    expires = int((time.time() + float(ttl)) * 1000) / 1000  # rounded down, never later
    return f"{url}?expires={expires:.3f}&signature=sandbox"


def _expired(request: Request) -> bool:
    raw = request.query_params.get("expires")
    try:
        return raw is not None and float(raw) <= time.time()
    except ValueError:
        return True


def _v3_avatars(request: Request) -> list[dict[str, Any]]:
    """Studio avatars (public), photo avatars and talking photos (private), as v3 lists them."""
    found = [
        {"id": a["avatar_id"], "name": a["avatar_name"], "gender": a["gender"],
         "avatar_type": "studio_avatar", "ownership": "public", "premium": a["premium"],
         "preview_image_url": _media_url(request, a["avatar_id"], "jpg"),
         "preview_video_url": _media_url(request, a["avatar_id"], "mp4"),
         "looks_count": 1, "default_voice_id": VOICES[0]["voice_id"], "created_at": 1_700_000_000}
        for a in AVATARS
    ]  # fmt: skip
    found += [
        {"id": p["photo_avatar_id"], "name": p["photo_avatar_name"], "gender": p["gender"],
         "avatar_type": "photo_avatar", "ownership": "private",
         "preview_image_url": _media_url(request, p["photo_avatar_id"], "jpg"),
         "preview_video_url": None, "looks_count": 1, "default_voice_id": None,
         "created_at": 1_700_000_100}
        for p in PHOTO_AVATARS
    ]  # fmt: skip
    found += [
        {"id": p["talking_photo_id"], "name": p["talking_photo_name"], "gender": None,
         "avatar_type": "talking_photo", "ownership": "private",
         "preview_image_url": _media_url(request, p["talking_photo_id"], "jpg"),
         "preview_video_url": None, "looks_count": 1, "default_voice_id": None,
         "created_at": 1_700_000_200}
        for p in TALKING_PHOTOS
    ]  # fmt: skip
    return found


def _v3_page(request: Request, items: list[dict[str, Any]]) -> Response:
    """One cursor page: ``limit`` 1-50 (default 20), ``token`` = the offset, opaque to clients."""
    try:
        limit = int(request.query_params.get("limit", 20))
        offset = int(request.query_params.get("token") or 0)
    except ValueError:
        return v3_error(400, "invalid_parameter", "limit and token must be valid", "token")
    if not 1 <= limit <= 50:
        return v3_error(400, "invalid_parameter", "limit must be between 1 and 50", "limit")
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return JSONResponse(
        {"data": chunk, "has_more": more, "next_token": str(offset + limit) if more else None}
    )


def _v3_character_ids() -> set[str]:
    ids = {a["avatar_id"] for a in AVATARS}
    ids |= {p["photo_avatar_id"] for p in PHOTO_AVATARS}
    return ids | {p["talking_photo_id"] for p in TALKING_PHOTOS}


def _check_v3_video(body: Any) -> tuple[str | None, str | None]:
    """Validate a ``POST /v3/videos`` body; returns (problem, param)."""
    if not isinstance(body, dict):
        return "body must be a JSON object", None
    if body.get("avatar_id") not in _v3_character_ids():
        return f"avatar {body.get('avatar_id')!r} not found", "avatar_id"
    script = body.get("script")
    if not isinstance(script, str) or not script.strip():
        return "script is required", "script"
    if body.get("voice_id") not in {v["voice_id"] for v in VOICES}:
        return f"voice {body.get('voice_id')!r} not found", "voice_id"
    speed = (body.get("voice_settings") or {}).get("speed")
    if speed is not None and not (isinstance(speed, int | float) and 0.5 <= speed <= 1.5):
        return "voice_settings.speed must be between 0.5 and 1.5", "voice_settings.speed"
    if body.get("aspect_ratio") not in (None, "16:9", "9:16"):
        return "aspect_ratio must be 16:9 or 9:16", "aspect_ratio"
    return None, None


async def _register(
    state: SandboxState, key: str, request: Request
) -> tuple[dict[str, Any], str | None]:
    """Register a webhook endpoint for ``key``; returns (endpoint, problem)."""
    try:
        body = await request.json()
    except ValueError:
        return {}, "request body is not valid JSON"
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return {}, "url must be an http(s) URL"
    events = body.get("events")
    endpoint = {
        "endpoint_id": f"ep_{secrets.token_hex(8)}",
        "url": url,
        "events": events if isinstance(events, list) else None,
        "status": "enabled",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "secret": f"whsec_{secrets.token_urlsafe(24)}",
    }
    endpoints: dict[str, list[dict[str, Any]]] = state.store(IDENTIFIER).setdefault("endpoints", {})
    endpoints.setdefault(key, []).append(endpoint)
    return endpoint, None


def _schedule_callbacks(state: SandboxState, key: str, job: SandboxJob, callback_url: Any) -> None:
    """Every endpoint registered for ``key``, plus the render's own ``callback_url``."""
    registered = state.store(IDENTIFIER).get("endpoints", {}).get(key, [])
    targets: dict[str, str | None] = {}
    for endpoint in registered:
        events = endpoint["events"]
        if events is None or any(e.startswith("avatar_video.") for e in events):
            targets[endpoint["url"]] = endpoint["secret"]
    if isinstance(callback_url, str) and callback_url and callback_url not in targets:
        targets[callback_url] = None
    for url, secret in targets.items():
        callbacks.schedule(state, IDENTIFIER, job, url, _event_payload(state, secret))


def _event_payload(state: SandboxState, secret: str | None) -> callbacks.Payload:
    def build(job: SandboxJob) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(completion_event(state, job)).encode()
        return body, ({SIGNATURE_HEADER: sign(secret, body)} if secret else {})

    return build


def completion_event(state: SandboxState, job: SandboxJob) -> dict[str, Any]:
    """``avatar_video.success`` with the result URL, or ``avatar_video.fail`` with the reason."""
    data: dict[str, Any] = {"video_id": job.id, "callback_id": job.data.get("callback_id")}
    if job.phase() == "succeeded":
        data["url"] = _signed_video_url(state, job)
        data["thumbnail_url"] = f"{job.data['media_root']}/{job.id}.jpg"
        data["duration"] = round(max(1.0, job.data.get("words", 0) / 2.5), 3)
        return {"event_type": "avatar_video.success", "event_data": data}
    error = _job_error(job)
    data["msg"] = f"{error['message']}: {error['detail']}"
    data["error_code"] = error["code"]
    return {"event_type": "avatar_video.fail", "event_data": data}
