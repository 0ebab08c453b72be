"""PlayHT v2 emulator: two-header auth, voices, cloned voices, asynchronous TTS jobs.

Follows ``reference/provider-contracts-media-automation.md`` section 7 (PlayHT has announced its
shutdown; this keeps the deprecated client testable). ``X-USER-ID`` and ``AUTHORIZATION`` (bare
secret or ``Bearer <secret>``, as pyht sends) are both required; a secret starting with
``invalid`` is refused with 401. PlayHT's error body is undocumented; the emulator answers
``{"error_message", "error_id"}``. ``POST /api/v2/tts`` answers 201 with a job and a
``Location`` header; the job's ``output`` stays null until the clock finishes it. Text containing
``[fail]`` makes the job fail (with an ``error`` object; PlayHT's own failure shape is
undocumented). Every accepted job is a paid call.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxJob, SandboxState

IDENTIFIER = "playht"
REJECTED_KEY_PREFIX = "invalid"
VOICE_ENGINES = {"PlayHT2.0", "Play3.0-mini", "PlayDialog"}
OUTPUT_FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg",
                  "flac": "audio/flac", "mulaw": "audio/basic"}  # fmt: skip
RESULTS_PATH = "/peregrine-results"

VOICES: list[dict[str, Any]] = [
    {
        "id": f"s3://voice-cloning-zero-shot/sandbox-{name.lower()}/manifest.json",
        "name": name,
        "sample": f"https://peregrine-samples.example/{name.lower()}.mp3",
        "accent": accent,
        "age": "adult",
        "gender": gender,
        "language": language,
        "language_code": code,
        "style": "narrative",
        "tempo": "neutral",
        "texture": "smooth",
        "voice_engine": engine,
    }
    for name, gender, language, code, accent, engine in (
        ("Jennifer", "female", "English (US)", "en-US", "american", "PlayHT2.0"),
        ("Charles", "male", "English (US)", "en-US", "american", "PlayHT2.0"),
        ("Olivia", "female", "English (GB)", "en-GB", "british", "Play3.0-mini"),
        ("Matteo", "male", "Italian", "it-IT", "italian", "PlayHT2.0"),
        ("Hanna", "female", "German", "de-DE", "german", "Play3.0-mini"),
    )
]
CLONED_VOICES: list[dict[str, Any]] = [
    {
        "id": "s3://voice-cloning-zero-shot/sandbox-cloned-ceo/manifest.json",
        "name": "Our CEO",
        "type": "instant",
    }
]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """The emulator's PlayHT error body for injected faults."""
    if kind == "rate_limit":
        return _error(429, "Too many requests", "RATE_LIMIT_EXCEEDED")
    return _error(status, "Internal server error (sandbox fault)", "INTERNAL_ERROR")


def fake_audio(text: str, voice: str) -> bytes:
    """A tiny MP3-looking payload (ID3 tag + MPEG frames), deterministic per text and voice."""
    seed = hashlib.sha256(f"playht\0{voice}\0{text}".encode()).digest()
    frame = b"\xff\xfb\x90\x64" + (seed * 13)[:413]
    frames = max(1, min(200, len(text) // 8))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * frames


def _error(status: int, message: str, error_id: str) -> JSONResponse:
    return JSONResponse({"error_message": message, "error_id": error_id}, status_code=status)


def _authorized(request: Request) -> bool:
    user_id = request.headers.get("x-user-id", "").strip()
    secret = request.headers.get("authorization", "").strip()
    if secret.lower().startswith("bearer "):
        secret = secret[7:].strip()
    return bool(user_id) and bool(secret) and not secret.startswith(REJECTED_KEY_PREFIX)


def _unauthorized() -> JSONResponse:
    return _error(401, "Invalid credentials: check X-USER-ID and AUTHORIZATION", "UNAUTHORIZED")


def _problem(body: Any) -> str | None:
    """What is wrong with a TTS body, if anything."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        return "text is required"
    known = {v["id"] for v in VOICES + CLONED_VOICES}
    if body.get("voice") not in known:
        return "voice is required and must be a known voice id"
    if body.get("voice_engine", "PlayHT2.0") not in VOICE_ENGINES:
        return "voice_engine must be one of " + ", ".join(sorted(VOICE_ENGINES))
    if body.get("output_format", "mp3") not in OUTPUT_FORMATS:
        return "output_format is not supported"
    return None


def routes(state: SandboxState) -> list[BaseRoute]:
    def root_url(request: Request) -> str:
        root = request.scope.get("root_path", "")
        return f"{request.url.scheme}://{request.url.netloc}{root}"

    def job_body(job: SandboxJob, request: Request) -> dict[str, Any]:
        phase = job.phase()
        path = f"/api/v2/tts/{job.id}"
        body: dict[str, Any] = {
            "id": job.id,
            "created": job.data["created"],
            "input": job.data["input"],
            "output": None,
            "_links": [
                {
                    "href": root_url(request) + path,
                    "method": "GET",
                    "rel": "self",
                    "contentType": "application/json",
                    "description": "Fetches this job's data.",
                },
            ],
        }
        if phase == "succeeded":
            audio = _job_audio(job)
            body["output"] = {
                "duration": round(len(audio) / 16_000, 3),
                "size": len(audio),
                "url": f"{root_url(request)}{RESULTS_PATH}/{job.id}.{job.data['extension']}",
            }
        elif phase == "failed":
            body["error"] = {"message": "The sandbox failed this job on purpose ([fail])."}
        return body

    async def voices(request: Request) -> Response:
        if not _authorized(request):
            return _unauthorized()
        return JSONResponse(VOICES)

    async def cloned_voices(request: Request) -> Response:
        if not _authorized(request):
            return _unauthorized()
        return JSONResponse(CLONED_VOICES)

    async def create_tts(request: Request) -> Response:
        if not _authorized(request):
            return _unauthorized()
        if "application/json" not in request.headers.get("accept", ""):
            return _error(
                406, "The sandbox only answers accept: application/json", "NOT_ACCEPTABLE"
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = _problem(body)
        if problem:
            return _error(400, problem, "INVALID_REQUEST")
        state.count(IDENTIFIER, "POST /api/v2/tts", paid=True)
        job_id = uuid.uuid4().hex
        output_format = body.get("output_format", "mp3")
        job = state.new_job(
            IDENTIFIER,
            job_id,
            fail="[fail]" in body["text"],
            created=datetime.now(UTC).isoformat(),
            input=body,
            extension=output_format,
        )
        headers = {"Location": f"/api/v2/tts/{job_id}"}
        return JSONResponse(job_body(job, request), status_code=201, headers=headers)

    async def get_tts(request: Request) -> Response:
        if not _authorized(request):
            return _unauthorized()
        job = state.job(IDENTIFIER, request.path_params["job_id"])
        if job is None:
            return _error(404, "TTS job not found", "NOT_FOUND")
        return JSONResponse(job_body(job, request))

    async def result_file(request: Request) -> Response:
        job_id, _, extension = request.path_params["name"].partition(".")
        job = state.job(IDENTIFIER, job_id)
        if job is None or job.phase() != "succeeded" or extension != job.data["extension"]:
            return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="text/xml")
        return Response(_job_audio(job), media_type=OUTPUT_FORMATS[extension])

    return [
        Route("/api/v2/voices", voices, methods=["GET"]),
        Route("/api/v2/cloned-voices", cloned_voices, methods=["GET"]),
        Route("/api/v2/tts", create_tts, methods=["POST"]),
        Route("/api/v2/tts/{job_id}", get_tts, methods=["GET"]),
        Route(RESULTS_PATH + "/{name}", result_file, methods=["GET"]),
    ]


def _job_audio(job: SandboxJob) -> bytes:
    return fake_audio(job.data["input"]["text"], job.data["input"]["voice"])
