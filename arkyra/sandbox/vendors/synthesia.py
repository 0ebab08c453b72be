"""Synthesia v2 emulator: raw-key auth, videos with a clock-driven lifecycle, paged templates.

Follows ``reference/provider-contracts-media-automation.md`` section 2. A key starting with
``invalid`` (or a ``Bearer`` prefix, which Synthesia does not take) is refused with 403. A script
containing ``[fail]`` renders to ``error``, one with ``[reject]`` ends ``rejected`` (moderation);
``test`` videos are free, others are paid calls.

Webhooks: ``POST /v2/webhooks`` ``{url, events}`` registers a URL for the key and returns its
``secret`` once. When a video ends, each matching webhook gets ``{type: "video.completed" |
"video.failed", data: <video>}`` with ``Synthesia-Timestamp`` (unix seconds) and
``Synthesia-Signature`` = hex HMAC-SHA256 of ``"{timestamp}.{raw body}"`` under the secret.
Results are served at ``GET /files/{id}.{mp4|jpg}`` once the video is complete.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox import callbacks
from arkyra.sandbox.state import SandboxJob, SandboxState

IDENTIFIER = "synthesia"
REJECTED_KEY_PREFIX = "invalid"
WEBHOOK_EVENTS = ("video.completed", "video.failed")
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"
FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PHASE_STATUS = {
    "queued": "in_progress",
    "running": "in_progress",
    "succeeded": "complete",
    "failed": "error",
    "cancelled": "deleted",
}
TEMPLATES = [
    {
        "id": f"tpl-{n:03d}",
        "title": f"Sandbox template {n}",
        "description": "A template served by the ARKYRA sandbox.",
        "variables": [{"name": "name", "type": "text"}],
        "createdAt": 1_700_000_000 + n,
        "lastUpdatedAt": 1_700_000_000 + n,
        "source": "synthesia" if n % 2 else "workspace",
    }
    for n in range(1, 8)
]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Synthesia's error body ``{error, context}``; a 429 carries ``RateLimit-*`` headers."""
    if kind == "rate_limit":
        headers = {"RateLimit-Limit": "60", "RateLimit-Reset": f"{retry_after or 1:g}"}
        body = {"error": "Too Many Requests", "context": "Rate limit exceeded"}
        return JSONResponse(body, status_code=429, headers=headers)
    return JSONResponse({"error": _phrase(status), "context": "injected by the sandbox"}, status)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error(status: int, error: str, context: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if context is not None:
        body["context"] = context
    return JSONResponse(body, status_code=status)


def _authorized(request: Request) -> bool:
    key = request.headers.get("authorization", "")
    return bool(key) and not key.lower().startswith(("bearer ", "basic ", REJECTED_KEY_PREFIX))


def _clip_problem(clip: Any) -> str | None:
    if not isinstance(clip, dict):
        return "each input must be an object"
    for name in ("avatar", "background"):
        if not clip.get(name):
            return f"input.{name} is required"
    if bool(clip.get("scriptText")) == bool(clip.get("scriptAudio")):
        return "input needs exactly one of scriptText or scriptAudio"
    return None


def _video(job: SandboxJob, base_url: str) -> dict[str, Any]:
    phase = job.phase()
    body: dict[str, Any] = {
        "id": job.id,
        "title": job.data.get("title") or "",
        "visibility": job.data.get("visibility") or "private",
        "callbackId": job.data.get("callbackId"),
        "status": "rejected" if phase == "failed" and job.data["rejected"] else PHASE_STATUS[phase],
        "createdAt": job.data["created_at"],
        "lastUpdatedAt": job.data["created_at"],
    }
    if phase == "succeeded":
        files = f"{base_url}/files/{job.id}"
        body["download"] = f"{files}.mp4?sig=sandbox"
        body["duration"] = "0:00:12.480000"
        body["thumbnail"] = {"image": f"{files}.jpg", "gif": f"{files}.gif"}
        body["captions"] = {"srt": f"{files}.srt", "vtt": f"{files}.vtt"}
    return body


def routes(state: SandboxState) -> list[BaseRoute]:
    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    def start(request: Request, body: dict[str, Any], scripts: list[str]) -> JSONResponse:
        video_id = str(uuid.uuid4())
        if not body.get("test"):
            state.count(IDENTIFIER, "POST /v2/videos", paid=True)
        job = state.new_job(
            IDENTIFIER,
            video_id,
            fail=any("[fail]" in s or "[reject]" in s for s in scripts),
            rejected=any("[reject]" in s for s in scripts),
            title=body.get("title"),
            visibility=body.get("visibility"),
            callbackId=body.get("callbackId"),
            created_at=int(time.time()),
            base_url=base_url(request),
        )
        _schedule_callbacks(state, request.headers.get("authorization", ""), job)
        return JSONResponse(_video(job, base_url(request)), status_code=201)

    async def create_webhook(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        body = await read_json(request)
        url = body.get("url") if body else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return _error(400, "Bad Request", "url must be an http(s) URL")
        events = body.get("events") if body else None
        if events is not None and (
            not isinstance(events, list) or not set(events) <= set(WEBHOOK_EVENTS)
        ):
            return _error(400, "Bad Request", f"events must be among {list(WEBHOOK_EVENTS)}")
        webhook = {
            "id": str(uuid.uuid4()),
            "url": url,
            "events": events or list(WEBHOOK_EVENTS),
            "status": "active",
            "secret": secrets.token_hex(24),
            "createdAt": int(time.time()),
        }
        key = request.headers.get("authorization", "")
        state.store(IDENTIFIER).setdefault("webhooks", {}).setdefault(key, []).append(webhook)
        return JSONResponse(webhook, status_code=201)

    async def files(request: Request) -> Response:
        job = state.job(IDENTIFIER, request.path_params["video_id"])
        suffix = request.path_params["suffix"]
        if job is None or job.phase() != "succeeded" or suffix not in ("mp4", "jpg"):
            return Response("Not Found", status_code=404, media_type="text/plain")
        if suffix == "jpg":
            return Response(FAKE_JPEG, media_type="image/jpeg")
        return Response(FAKE_MP4, media_type="video/mp4")

    async def read_json(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def create_video(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        body = await read_json(request)
        if body is None:
            return _error(400, "Bad Request", "body must be a JSON object")
        clips = body.get("input")
        if not isinstance(clips, list) or not clips:
            return _error(400, "Bad Request", "input must be a non-empty array")
        for clip in clips:
            problem = _clip_problem(clip)
            if problem:
                return _error(400, "Bad Request", problem)
        if body.get("aspectRatio") not in (None, "16:9", "9:16", "1:1", "4:5", "5:4"):
            return _error(400, "Bad Request", "aspectRatio is not supported")
        return start(request, body, [str(c.get("scriptText") or "") for c in clips])

    async def create_from_template(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        body = await read_json(request)
        if body is None or not body.get("templateId"):
            return _error(400, "Bad Request", "templateId is required")
        if not any(t["id"] == body["templateId"] for t in TEMPLATES):
            return _error(404, "Not Found", f"template {body['templateId']} not found")
        data = body.get("templateData") or {}
        return start(request, body, [str(v) for v in data.values()])

    async def get_video(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        job = state.job(IDENTIFIER, request.path_params["video_id"])
        if job is None:
            return _error(404, "Not Found", "video not found")
        return JSONResponse(_video(job, base_url(request)))

    def page(request: Request, items: list[dict[str, Any]]) -> tuple[list[Any], int | None]:
        limit = max(1, min(int(request.query_params.get("limit", 20)), 100))
        offset = max(0, int(request.query_params.get("offset", 0)))
        chunk = items[offset : offset + limit]
        more = offset + limit < len(items)
        return chunk, (offset + limit if more else None)

    async def list_videos(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        jobs = sorted(state.store(IDENTIFIER).get("jobs", {}).values(),
                      key=lambda job: job.created, reverse=True)  # fmt: skip
        videos = [_video(job, base_url(request)) for job in jobs]
        try:
            chunk, next_offset = page(request, videos)
        except ValueError:
            return _error(400, "Bad Request", "limit and offset must be integers")
        return JSONResponse({"videos": chunk, "nextOffset": next_offset})

    async def list_templates(request: Request) -> Response:
        if not _authorized(request):
            return _error(403, "Forbidden", "Invalid API key")
        source = request.query_params.get("source")
        templates = [t for t in TEMPLATES if source in (None, t["source"])]
        try:
            chunk, next_offset = page(request, templates)
        except ValueError:
            return _error(400, "Bad Request", "limit and offset must be integers")
        return JSONResponse({"templates": chunk, "nextOffset": next_offset})

    return [
        Route("/v2/videos", list_videos, methods=["GET"]),
        Route("/v2/videos", create_video, methods=["POST"]),
        Route("/v2/videos/fromTemplate", create_from_template, methods=["POST"]),
        Route("/v2/videos/{video_id}", get_video, methods=["GET"]),
        Route("/v2/templates", list_templates, methods=["GET"]),
        Route("/v2/webhooks", create_webhook, methods=["POST"]),
        Route("/files/{video_id}.{suffix}", files, methods=["GET"]),
    ]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Synthesia's signature: hex HMAC-SHA256 of ``"{timestamp}.{raw body}"``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _schedule_callbacks(state: SandboxState, key: str, job: SandboxJob) -> None:
    """Every webhook registered for the key, for the event the video will end with."""
    ending = "video.failed" if job.fails else "video.completed"  # known from the start
    for webhook in state.store(IDENTIFIER).get("webhooks", {}).get(key, []):
        if ending in webhook["events"]:
            callbacks.schedule(state, IDENTIFIER, job, webhook["url"], _payload(webhook))


def _payload(webhook: dict[str, Any]) -> callbacks.Payload:
    def build(job: SandboxJob) -> tuple[bytes, dict[str, str]]:
        video = _video(job, job.data["base_url"])
        kind = "video.completed" if video["status"] == "complete" else "video.failed"
        body = json.dumps({"type": kind, "data": video}).encode()
        timestamp = str(int(time.time()))
        return body, {
            "Synthesia-Timestamp": timestamp,
            "Synthesia-Signature": sign(webhook["secret"], timestamp, body),
        }

    return build
