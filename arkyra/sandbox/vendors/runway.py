"""Runway emulator: Bearer auth + required ``X-Runway-Version``, image-to-video tasks, voices.

Follows ``reference/provider-contracts-media-automation.md`` section 4. A missing or wrong
version header gets 400; a key starting with ``invalid`` gets 401. Tasks go PENDING, THROTTLED
(the queued phase), RUNNING with progress, then SUCCEEDED; ``[fail]`` in ``promptText`` ends
in FAILED with ``failure`` and ``failureCode``. Every accepted task is a paid call.
"""

from __future__ import annotations

import base64
import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxJob, SandboxState

IDENTIFIER = "runway"
API_VERSION = "2024-11-06"
REJECTED_KEY_PREFIX = "invalid"
RATIOS = frozenset({"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"})
MODELS = ("gen4_turbo", "gen4.5")
VOICES = [
    {
        "id": f"voice-{n:02d}",
        "name": f"Sandbox voice {n}",
        "description": None,
        "createdAt": f"2026-01-{n:02d}T00:00:00.000Z",
        "status": "FAILED" if n == 4 else "READY",
        **(
            {"failureReason": "sample too short"}
            if n == 4
            else {"previewUrl": f"https://sandbox.invalid/voices/{n}.mp3"}
        ),
    }
    for n in range(1, 6)
]


#: ``ftyp`` + ``free`` boxes: enough for a player to call it an MP4.
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Runway's error body ``{error}``; a 429 carries ``retry-after-ms`` as the SDK reads it."""
    if kind == "rate_limit":
        headers = {"retry-after-ms": f"{(retry_after or 1) * 1000:g}"}
        return JSONResponse({"error": "Too many requests"}, status_code=429, headers=headers)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return JSONResponse({"error": f"{phrase} (injected by the sandbox)"}, status_code=status)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refusal(request: Request) -> JSONResponse | None:
    """401 for a bad key, 400 for a missing or wrong API version; None when all is well."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key or key.startswith(REJECTED_KEY_PREFIX):
        return _error(401, "Invalid API key")
    version = request.headers.get("x-runway-version")
    if version is None:
        return _error(400, "The X-Runway-Version header is required")
    if version != API_VERSION:
        return _error(400, f"Unsupported API version {version!r}")
    return None


def _request_problem(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model not in MODELS:
        return f"model must be one of {', '.join(MODELS)}"
    image = body.get("promptImage")
    uris = [image] if isinstance(image, str) else [i.get("uri") for i in image or []]
    if not uris or not all(
        isinstance(u, str) and u.startswith(("https://", "runway://", "data:image/")) for u in uris
    ):
        return "promptImage must be an https URL, a runway:// URI or a data URI"
    if body.get("ratio") not in RATIOS:
        return f"ratio must be one of {', '.join(sorted(RATIOS))}"
    text = body.get("promptText")
    if text is not None and (not isinstance(text, str) or not 1 <= len(text) <= 1000):
        return "promptText must be 1 to 1000 characters"
    if model == "gen4.5":
        duration = body.get("duration")
        if text is None:
            return "promptText is required for gen4.5"
        if not isinstance(duration, int) or not 2 <= duration <= 10:
            return "duration must be an integer from 2 to 10 for gen4.5"
    return None


def _task(job: SandboxJob, base_url: str) -> dict[str, Any]:
    phase = job.phase()
    progress = job.progress()
    body: dict[str, Any] = {"id": job.id, "createdAt": job.data["createdAt"]}
    if phase == "queued":
        body["status"] = "PENDING" if progress < 0.05 else "THROTTLED"
    elif phase == "running":
        body["status"] = "RUNNING"
        body["progress"] = round(progress, 3)
    elif phase == "succeeded":
        body["status"] = "SUCCEEDED"
        body["output"] = [f"{base_url}/outputs/{job.id}.mp4?_jwt=sandbox"]
    elif phase == "failed":
        body["status"] = "FAILED"
        body["failure"] = "The generation failed; try a different prompt."
        body["failureCode"] = "INTERNAL.BAD_OUTPUT.CODE01"
    else:
        body["status"] = "CANCELLED"
    return body


def routes(state: SandboxState) -> list[BaseRoute]:
    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"

    async def organization(request: Request) -> Response:
        refused = _refusal(request)
        if refused:
            return refused
        models = {m: {"maxConcurrentGenerations": 2, "maxDailyGenerations": 50} for m in MODELS}
        daily = state.store(IDENTIFIER).get("daily", 0)
        return JSONResponse(
            {
                "creditBalance": 1000 - 25 * daily,
                "tier": {"maxMonthlyCreditSpend": 10000, "models": models},
                "usage": {"models": {m: {"dailyGenerations": daily} for m in MODELS}},
            }
        )

    async def image_to_video(request: Request) -> Response:
        refused = _refusal(request)
        if refused:
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        problem = _request_problem(body)
        if problem:
            return _error(400, problem)
        state.count(IDENTIFIER, "POST /v1/image_to_video", paid=True)
        store = state.store(IDENTIFIER)
        store["daily"] = store.get("daily", 0) + 1
        job = state.new_job(
            IDENTIFIER,
            str(uuid.uuid4()),
            fail="[fail]" in str(body.get("promptText") or ""),
            createdAt="2026-11-25T00:00:00.000Z",
        )
        return JSONResponse({"id": job.id})

    async def get_task(request: Request) -> Response:
        refused = _refusal(request)
        if refused:
            return refused
        job = state.job(IDENTIFIER, request.path_params["task_id"])
        if job is None:
            return _error(404, "Task not found")
        return JSONResponse(_task(job, base_url(request)))

    async def cancel_task(request: Request) -> Response:
        refused = _refusal(request)
        if refused:
            return refused
        job = state.job(IDENTIFIER, request.path_params["task_id"])
        if job is None:
            return _error(404, "Task not found")
        job.cancelled = True
        return Response(status_code=204)

    async def voices(request: Request) -> Response:
        refused = _refusal(request)
        if refused:
            return refused
        try:
            limit = int(request.query_params["limit"])
            cursor = request.query_params.get("cursor")
            offset = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
        except (KeyError, ValueError):
            return _error(400, "limit is required; cursor must come from a previous page")
        if not 1 <= limit <= 100:
            return _error(400, "limit must be from 1 to 100")
        body: dict[str, Any] = {"data": VOICES[offset : offset + limit]}
        if offset + limit < len(VOICES):
            body["nextCursor"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return JSONResponse(body)

    async def output(request: Request) -> Response:
        """The result file behind ``output[0]`` (pre-signed in real life: no auth)."""
        job = state.job(IDENTIFIER, request.path_params["task_id"])
        if job is None or job.phase() != "succeeded":
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(FAKE_MP4, media_type="video/mp4")

    return [
        Route("/outputs/{task_id}.mp4", output, methods=["GET"]),
        Route("/v1/organization", organization, methods=["GET"]),
        Route("/v1/image_to_video", image_to_video, methods=["POST"]),
        Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/v1/tasks/{task_id}", cancel_task, methods=["DELETE"]),
        Route("/v1/voices", voices, methods=["GET"]),
    ]
