"""Murf emulator: ``api-key`` auth, auth token, voice list, synchronous speech generation.

Follows ``reference/provider-contracts-media-automation.md`` section 6. Murf's error body is not
documented; the emulator answers ``{"errorMessage", "errorCode"}`` (clients must read errors
defensively anyway). Keys steer the account: ``invalid...`` is refused with 401, ``noquota...``
gets 402 on generation. Every accepted generation is a paid call. ``audioFile`` points at a
download route that, like a presigned URL, needs no key.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "murf"
REJECTED_KEY_PREFIX = "invalid"
NO_QUOTA_KEY_PREFIX = "noquota"
CHARACTER_ALLOWANCE = 100_000
FORMATS = {"MP3": "audio/mpeg", "WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg",
           "PCM": "audio/pcm", "ALAW": "audio/basic", "ULAW": "audio/basic"}  # fmt: skip
SAMPLE_RATES = {8000, 24000, 44100, 48000}
FILES_PATH = "/user-upload/one-day-temp"

VOICES: list[dict[str, Any]] = [
    {
        "voiceId": voice_id,
        "displayName": f"{name} ({gender})",
        "locale": locale,
        "displayLanguage": language,
        "accent": accent,
        "gender": gender,
        "description": f"{name}, a sandbox voice",
        "availableStyles": ["Conversational", "Promo"],
        "supportedLocales": {
            loc: {"detail": loc, "availableStyles": ["Conversational"]} for loc in extra
        },
    }
    for voice_id, name, gender, locale, language, accent, extra in (
        ("en-US-natalie", "Natalie", "Female", "en-US", "English", "US", ("en-US", "es-ES")),
        ("en-US-ken", "Ken", "Male", "en-US", "English", "US", ("en-US",)),
        ("en-UK-hazel", "Hazel", "Female", "en-UK", "English", "UK", ("en-UK",)),
        ("de-DE-matthias", "Matthias", "Male", "de-DE", "Deutsch", "German", ("de-DE", "en-US")),
        ("fr-FR-adelie", "Adelie", "Female", "fr-FR", "Français", "French", ("fr-FR",)),
        ("es-ES-elvira", "Elvira", "Female", "es-ES", "Español", "Spain", ("es-ES",)),
    )
]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """The emulator's Murf error body for injected faults."""
    if kind == "rate_limit":
        return _error(429, "Too many requests, please slow down")
    return _error(status, "Service unavailable (sandbox fault)")


def fake_audio(text: str, voice_id: str) -> bytes:
    """A tiny MP3-looking payload (ID3 tag + MPEG frames), deterministic per text and voice."""
    seed = hashlib.sha256(f"murf\0{voice_id}\0{text}".encode()).digest()
    frame = b"\xff\xfb\x90\x64" + (seed * 13)[:413]
    frames = max(1, min(200, len(text) // 8))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * frames


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errorMessage": message, "errorCode": status}, status_code=status)


def _key(request: Request) -> str | None:
    key = request.headers.get("api-key", "")
    return key if key and not key.startswith(REJECTED_KEY_PREFIX) else None


def _unauthorized() -> JSONResponse:
    return _error(401, "Invalid or expired api-key")


def _problem(body: Any) -> str | None:
    """What is wrong with a generate body, if anything."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        return "text is required"
    if not any(v["voiceId"] == body.get("voiceId") for v in VOICES):
        return f"Invalid voice id: {body.get('voiceId')}"
    if body.get("format", "MP3") not in FORMATS:
        return f"Invalid format: {body.get('format')}"
    if "sampleRate" in body and body["sampleRate"] not in SAMPLE_RATES:
        return "Invalid sampleRate"
    rate = body.get("rate", 0)
    if not isinstance(rate, int) or not -50 <= rate <= 50:
        return "rate must be between -50 and 50"
    return None


def routes(state: SandboxState) -> list[BaseRoute]:
    def files() -> dict[str, tuple[bytes, str]]:
        return state.store(IDENTIFIER).setdefault("files", {})

    def file_url(request: Request, name: str) -> str:
        root = request.scope.get("root_path", "")
        return f"{request.url.scheme}://{request.url.netloc}{root}{FILES_PATH}/{name}"

    async def auth_token(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        return JSONResponse(
            {
                "token": "sbx-token-" + uuid.uuid4().hex,
                "expiryInEpochMillis": int((time.time() + 3600) * 1000),
            }
        )

    async def list_voices(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        return JSONResponse(VOICES)

    async def generate(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = _problem(body)
        if problem:
            return _error(400, problem)
        text: str = body["text"]
        if key.startswith(NO_QUOTA_KEY_PREFIX):
            return _error(402, "Insufficient character balance for this request")
        state.count(IDENTIFIER, "POST /v1/speech/generate", paid=True)
        audio_format = body.get("format", "MP3")
        audio = fake_audio(text, body["voiceId"])
        name = f"{uuid.uuid4().hex}.{audio_format.lower()}"
        files()[name] = (audio, FORMATS[audio_format])
        answer: dict[str, Any] = {
            "audioFile": file_url(request, name),
            "audioLengthInSeconds": round(len(audio) / 16_000, 3),
            "consumedCharacterCount": len(text),
            "remainingCharacterCount": CHARACTER_ALLOWANCE - len(text),
            "wordDurations": [],
        }
        if body.get("encodeAsBase64"):
            answer["encodedAudio"] = base64.b64encode(audio).decode()
        return JSONResponse(answer)

    async def download(request: Request) -> Response:
        stored = files().get(request.path_params["name"])
        if stored is None:
            return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="text/xml")
        audio, media_type = stored
        return Response(audio, media_type=media_type)

    return [
        Route("/v1/auth/token", auth_token, methods=["GET"]),
        Route("/v1/speech/voices", list_voices, methods=["GET"]),
        Route("/v1/speech/generate", generate, methods=["POST"]),
        Route(FILES_PATH + "/{name}", download, methods=["GET"]),
    ]
