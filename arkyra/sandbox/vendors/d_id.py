"""D-ID emulator: ``Basic <key>`` auth, credits, talks and clips on a clock, presenters, voices.

Follows ``reference/provider-contracts-media-automation.md`` section 3. A key starting with
``invalid`` gets 401. Every talk or clip costs one credit (402 when none is left); a script with
``[reject]`` is refused with 451, one with ``[fail]`` ends in ``error``.

A ``webhook`` URL on a talk or clip gets the final talk/clip object POSTed to it, unsigned (D-ID
documents no signature). Results are served at ``GET /results/{id}.mp4`` once done.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox import callbacks
from arkyra.sandbox.state import SandboxJob, SandboxState

IDENTIFIER = "d-id"
REJECTED_KEY_PREFIX = "invalid"
STARTING_CREDITS = 20
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"
PHASE_STATUS = {
    "queued": "created",
    "running": "started",
    "succeeded": "done",
    "failed": "error",
    "cancelled": "error",
}
PRESENTERS = [
    {
        "presenter_id": f"v2_public_presenter_{n:02d}",
        "name": f"Presenter {n}",
        "driver_id": f"drv_{n:02d}",
        "gender": "female" if n % 2 else "male",
        "preview_url": f"https://sandbox.invalid/presenters/{n}.mp4",
        "talking_preview_url": f"https://sandbox.invalid/presenters/{n}-talk.mp4",
        "thumbnail_url": f"https://sandbox.invalid/presenters/{n}.jpg",
        "is_greenscreen": n % 3 == 0,
    }
    for n in range(1, 6)
]


def _voice(provider: str, vid: str, name: str, gender: str, locales: list[str]) -> dict[str, Any]:
    languages = [
        {"language": _LANGUAGE[loc.split("-")[0]], "locale": loc, "previewUrl": ""}
        for loc in locales
    ]
    return {
        "id": vid,
        "name": name,
        "gender": gender,
        "provider": provider,
        "access": "public",
        "languages": languages,
        "styles": ["cheerful"] if provider == "microsoft" else [],
    }


_LANGUAGE = {"en": "English", "de": "German", "fr": "French"}
VOICES = [
    _voice("microsoft", "en-US-JennyNeural", "Jenny", "female", ["en-US"]),
    _voice("microsoft", "en-GB-RyanNeural", "Ryan", "male", ["en-GB"]),
    _voice("microsoft", "de-DE-KatjaNeural", "Katja", "female", ["de-DE"]),
    _voice("microsoft", "fr-FR-HenriNeural", "Henri", "male", ["fr-FR"]),
    _voice("elevenlabs", "21m00Tcm4TlvDq8ikWAM", "Rachel", "female", ["en-US", "de-DE"]),
]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """D-ID's error body ``{kind, description}``."""
    if kind == "rate_limit":
        body = {"kind": "TooManyRequestsError", "description": "Too many requests"}
        return JSONResponse(body, status_code=429)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    kind = "InternalServerError" if status >= 500 else phrase.replace(" ", "") + "Error"
    body = {"kind": kind, "description": f"{phrase} (injected by the sandbox)"}
    return JSONResponse(body, status_code=status)


def _error(status: int, kind: str, description: str) -> JSONResponse:
    return JSONResponse({"kind": kind, "description": description}, status_code=status)


def _key(request: Request) -> str | None:
    """The key from ``Basic <key>``, or None when missing or refused."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "basic" or not key or key.startswith(REJECTED_KEY_PREFIX):
        return None
    return key


def _unauthorized() -> JSONResponse:
    return _error(401, "AuthorizationError", "Unauthorized: invalid API key")


def _script_problem(script: Any) -> str | None:
    if not isinstance(script, dict):
        return "script is required"
    if script.get("type") == "text":
        text = script.get("input")
        if not isinstance(text, str) or not 3 <= len(text) <= 40_000:
            return "script.input must be 3 to 40000 characters"
        provider = script.get("provider") or {}
        if not provider.get("type") or not provider.get("voice_id"):
            return "script.provider needs type and voice_id"
        return None
    if script.get("type") == "audio":
        url = script.get("audio_url")
        return None if isinstance(url, str) and url.startswith("https://") else "bad audio_url"
    return "script.type must be text or audio"


def _talk(job: SandboxJob, base_url: str) -> dict[str, Any]:
    phase = job.phase()
    body: dict[str, Any] = {
        "id": job.id,
        "object": job.data["object"],
        "created_at": job.data["created_at"],
        "status": PHASE_STATUS[phase],
        "user_data": job.data.get("user_data"),
    }
    if phase in ("queued", "running"):
        body["pending_url"] = f"{base_url}/pending/{job.id}"
    if phase == "succeeded":
        body["result_url"] = f"{base_url}/results/{job.id}.mp4?X-Amz-Signature=sandbox"
        body["duration"] = 8.5
    if phase in ("failed", "cancelled"):
        body["error"] = {"kind": "FaceError", "description": "Could not animate the face"}
    return body


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    decoded = base64.urlsafe_b64decode(token.encode()).decode()
    return int(decoded.removeprefix("offset:"))


def routes(state: SandboxState) -> list[BaseRoute]:
    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    def credits_left(key: str) -> int:
        credits = state.store(IDENTIFIER).setdefault("credits", {})
        return credits.setdefault(key, STARTING_CREDITS)

    def spend(key: str) -> None:
        state.store(IDENTIFIER)["credits"][key] -= 1

    async def get_credits(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        left = credits_left(key)
        owner = "auth0|" + hashlib.sha256(key.encode()).hexdigest()[:24]
        credit = {
            "owner_id": owner,
            "remaining": left,
            "total": STARTING_CREDITS,
            "expire_at": "2099-01-01T00:00:00.000Z",
            "plan_group": "deid-api",
            "product_billing_interval": "month",
        }
        return JSONResponse({"credits": [credit], "remaining": left, "total": STARTING_CREDITS})

    async def create(request: Request, prefix: str, obj: str) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "ValidationError", "body must be a JSON object")
        problem = _script_problem(body.get("script"))
        if problem:
            return _error(400, "ValidationError", problem)
        if obj == "talk" and not str(body.get("source_url", "")).startswith("https://"):
            return _error(400, "ValidationError", "source_url must be an https image URL")
        if obj == "clip" and not any(
            p["presenter_id"] == body.get("presenter_id") for p in PRESENTERS
        ):
            return _error(404, "NotFoundError", "presenter not found")
        text = str(body["script"].get("input") or "")
        if "[reject]" in text:
            return _error(451, "ContentModerationError", "The script was rejected by moderation")
        if credits_left(key) <= 0:
            return _error(402, "InsufficientCreditsError", "not enough credits")
        spend(key)
        state.count(IDENTIFIER, f"POST /{obj}s", paid=True)
        created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        job = state.new_job(
            IDENTIFIER,
            f"{prefix}_{uuid.uuid4().hex[:21]}",
            fail="[fail]" in text,
            object=obj,
            created_at=created_at,
            user_data=body.get("user_data"),
            base_url=base_url(request),
        )
        webhook = body.get("webhook")
        if isinstance(webhook, str) and webhook:
            callbacks.schedule(state, IDENTIFIER, job, webhook, _final_object)
        return JSONResponse(
            {"id": job.id, "object": obj, "created_at": created_at, "status": "created"},
            status_code=201,
        )

    async def create_talk(request: Request) -> Response:
        return await create(request, "tlk", "talk")

    async def create_clip(request: Request) -> Response:
        return await create(request, "clp", "clip")

    async def get_job(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        job = state.job(IDENTIFIER, request.path_params["job_id"])
        expected = "clip" if request.url.path.rstrip("/").split("/")[-2] == "clips" else "talk"
        if job is None or job.data.get("object") != expected:
            return _error(404, "NotFoundError", f"{expected} not found")
        return JSONResponse(_talk(job, base_url(request)))

    async def list_presenters(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        try:
            limit = max(1, min(int(request.query_params.get("limit", 100)), 100))
            offset = _offset(request.query_params.get("token"))
        except ValueError:
            return _error(400, "ValidationError", "bad limit or token")
        chunk = PRESENTERS[offset : offset + limit]
        body: dict[str, Any] = {"presenters": chunk}
        if offset + limit < len(PRESENTERS):
            body["token"] = _page_token(offset + limit)
        return JSONResponse(body)

    async def list_voices(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        provider = request.query_params.get("provider")
        return JSONResponse([v for v in VOICES if provider in (None, v["provider"])])

    async def result(request: Request) -> Response:
        """The file behind ``result_url`` (a pre-signed S3 URL in real life: no auth)."""
        job = state.job(IDENTIFIER, request.path_params["job_id"])
        if job is None or job.phase() != "succeeded":
            body = "<Error><Code>NoSuchKey</Code></Error>"
            return Response(body, status_code=404, media_type="application/xml")
        return Response(FAKE_MP4, media_type="video/mp4")

    return [
        Route("/results/{job_id}.mp4", result, methods=["GET"]),
        Route("/credits", get_credits, methods=["GET"]),
        Route("/talks", create_talk, methods=["POST"]),
        Route("/talks/{job_id}", get_job, methods=["GET"]),
        Route("/clips", create_clip, methods=["POST"]),
        Route("/clips/presenters", list_presenters, methods=["GET"]),
        Route("/clips/{job_id}", get_job, methods=["GET"]),
        Route("/tts/voices", list_voices, methods=["GET"]),
    ]


def _final_object(job: SandboxJob) -> tuple[bytes, dict[str, str]]:
    """The webhook body: the talk or clip as ``GET`` shows it once final; no signature."""
    return json.dumps(_talk(job, job.data["base_url"])).encode(), {}
