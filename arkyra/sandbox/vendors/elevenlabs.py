"""ElevenLabs emulator: ``xi-api-key`` auth, user, models, paged v2 voices, synchronous TTS.

Follows ``reference/provider-contracts-media-automation.md`` section 5. Keys steer the account:

- ``invalid...``: refused, 401 ``invalid_api_key``;
- ``scoped...``: valid, but without ``user_read`` (``GET /v1/user`` gives 401
  ``missing_permissions``);
- ``noquota...``: valid, but synthesis gives 401 ``quota_exceeded``.

Text containing ``[busy]`` or ``[concurrent]`` answers the matching 429 kind. Every accepted
synthesis is a paid call; the audio is a small MP3 derived from the text. Each one is kept in
the account's history: ``GET /v1/history`` (newest first; ``voice_id``, ``date_after_unix``,
``page_size``, ``start_after_history_item_id``) and ``GET /v1/history/{id}/audio`` (free).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "elevenlabs"
REJECTED_KEY_PREFIX = "invalid"
SCOPED_KEY_PREFIX = "scoped"
NO_QUOTA_KEY_PREFIX = "noquota"
DEFAULT_PAGE_SIZE = 10
OUTPUT_FORMAT = re.compile(r"^(mp3|pcm)_\d+(_\d+)?$")

_CATEGORIES = ("premade", "premade", "cloned", "generated", "professional")
_GENDERS = ("female", "male")
VOICES: list[dict[str, Any]] = [
    {
        "voice_id": f"sbxVoice{n:03d}abcdefgh",
        "name": f"{('Rachel', 'Adam', 'Bella', 'Josh', 'Elli', 'Sam')[n % 6]} {n}",
        "category": _CATEGORIES[n % len(_CATEGORIES)],
        "labels": {"accent": "american", "gender": _GENDERS[n % 2], "language": "en"},
        "description": "A voice served by the ARKYRA sandbox.",
        "preview_url": f"https://storage.example/previews/{n:03d}.mp3",
        "settings": {"stability": 0.5, "similarity_boost": 0.75},
    }
    for n in range(1, 24)
]
MODELS: list[dict[str, Any]] = [
    {
        "model_id": model_id,
        "name": name,
        "description": f"{name} (sandbox)",
        "can_do_text_to_speech": True,
        "languages": [{"language_id": "en", "name": "English"}],
        "max_characters_request_subscribed_user": limit,
        "token_cost_factor": 1.0,
    }
    for model_id, name, limit in (
        ("eleven_multilingual_v2", "Eleven Multilingual v2", 10_000),
        ("eleven_flash_v2_5", "Eleven Flash v2.5", 40_000),
        ("eleven_turbo_v2_5", "Eleven Turbo v2.5", 40_000),
    )
]
_VOICE_TYPES = {
    "personal": {"cloned", "generated", "professional"},
    "non-default": {"cloned", "generated", "professional"},
    "default": {"premade"},
    "community": set(),
    "workspace": {"cloned", "generated", "professional"},
    "saved": {"cloned", "generated", "professional", "premade"},
}


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """ElevenLabs' ``{"detail": {status, message}}``; a 429 is ``system_busy``."""
    if kind == "rate_limit":
        return _error(429, "system_busy", "The system is experiencing heavy traffic.")
    return _error(status, "internal_server_error", "Something went wrong (sandbox fault).")


def fake_mp3(text: str, voice_id: str) -> bytes:
    """A tiny MP3-looking payload (ID3 tag + MPEG frames), deterministic per text and voice."""
    seed = hashlib.sha256(f"{voice_id}\0{text}".encode()).digest()
    frame = b"\xff\xfb\x90\x64" + (seed * 13)[:413]
    frames = max(1, min(200, len(text) // 8))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * frames


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


def _key(request: Request) -> str | None:
    """The request's key if accepted, else ``None``."""
    key = request.headers.get("xi-api-key", "")
    return key if key and not key.startswith(REJECTED_KEY_PREFIX) else None


def _unauthorized() -> JSONResponse:
    return _error(401, "invalid_api_key", "Invalid API key")


def _user_id(key: str) -> str:
    return "user_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int | None:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(value) if kind == "offset" else None
    except ValueError:
        return None


def _filtered_voices(request: Request) -> list[dict[str, Any]]:
    query = request.query_params
    voices = VOICES
    if query.get("search"):
        needle = query["search"].lower()
        voices = [v for v in voices if needle in v["name"].lower()]
    if query.get("category"):
        voices = [v for v in voices if v["category"] == query["category"]]
    if query.get("voice_type"):
        allowed = _VOICE_TYPES.get(query["voice_type"], set())
        voices = [v for v in voices if v["category"] in allowed]
    return voices


def _validation_error(field: str, message: str, kind: str, where: str = "body") -> JSONResponse:
    body = {"detail": [{"loc": [where, field], "msg": message, "type": kind}]}
    return JSONResponse(body, status_code=422)


def routes(state: SandboxState) -> list[BaseRoute]:
    async def get_user(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        if key.startswith(SCOPED_KEY_PREFIX):
            return _error(
                401,
                "missing_permissions",
                "The API key you used is missing the permission user_read to execute this "
                "operation.",
            )
        return JSONResponse(
            {
                "user_id": _user_id(key),
                "first_name": "Sandbox",
                "subscription": {
                    "tier": "creator",
                    "character_count": 1200,
                    "character_limit": 100_000,
                    "status": "active",
                    "next_character_count_reset_unix": 1_900_000_000,
                    "voice_limit": 30,
                },
                "created_at": 1_700_000_000,
                "seat_type": "workspace_admin",
            }
        )

    async def list_models(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        return JSONResponse(MODELS)

    async def list_voices(request: Request) -> Response:
        if _key(request) is None:
            return _unauthorized()
        try:
            page_size = int(request.query_params.get("page_size", DEFAULT_PAGE_SIZE))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 100:
            return JSONResponse(
                {"detail": [{"loc": ["query", "page_size"], "msg": "must be 1..100", "type": ""}]},
                status_code=422,
            )
        offset = _offset(request.query_params.get("next_page_token"))
        if offset is None:
            return _error(400, "invalid_page_token", "The next_page_token is not valid.")
        voices = _filtered_voices(request)
        page = voices[offset : offset + page_size]
        has_more = offset + page_size < len(voices)
        return JSONResponse(
            {
                "voices": page,
                "has_more": has_more,
                "total_count": len(voices),
                "next_page_token": _page_token(offset + page_size) if has_more else None,
            }
        )

    async def text_to_speech(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        voice_id = request.path_params["voice_id"]
        output_format = request.query_params.get("output_format", "mp3_44100_128")
        if not OUTPUT_FORMAT.match(output_format):
            return _error(400, "invalid_output_format", f"Unknown output_format {output_format}")
        try:
            body = await request.json()
        except ValueError:
            return _validation_error("text", "Field required", "missing")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return _validation_error("text", "Field required", "missing")
        if not any(v["voice_id"] == voice_id for v in VOICES):
            return _error(
                400, "voice_not_found", f"A voice with voice_id {voice_id} was not found."
            )
        if "[busy]" in text:
            return _error(429, "system_busy", "The system is experiencing heavy traffic.")
        if "[concurrent]" in text:
            return _error(
                429, "too_many_concurrent_requests", "Too many concurrent requests for your plan."
            )
        if key.startswith(NO_QUOTA_KEY_PREFIX):
            return _error(401, "quota_exceeded", "This request exceeds your quota.")
        state.count(IDENTIFIER, "POST /v1/text-to-speech", paid=True)
        audio = fake_mp3(text, voice_id)
        history = state.store(IDENTIFIER).setdefault("history", [])
        history.append({
            "history_item_id": uuid.uuid4().hex[:20], "request_id": uuid.uuid4().hex[:20],
            "voice_id": voice_id, "model_id": body.get("model_id") or "eleven_multilingual_v2",
            "text": text, "date_unix": int(time.time()), "state": "created",
            "character_count_change_from": 0, "character_count_change_to": len(text),
            "content_type": "audio/mpeg", "source": "TTS", "owner": _user_id(key), "audio": audio,
        })  # fmt: skip
        media_type = "audio/mpeg" if output_format.startswith("mp3") else "audio/pcm"
        return Response(audio, media_type=media_type)

    def own_history(key: str) -> list[dict[str, Any]]:
        items = state.store(IDENTIFIER).get("history", [])
        return [i for i in reversed(items) if i["owner"] == _user_id(key)]  # newest first

    async def list_history(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        query = request.query_params
        numbers: dict[str, int] = {}
        for name, default in (("page_size", "100"), ("date_after_unix", "0")):
            try:
                numbers[name] = int(query.get(name, default))
            except ValueError:
                return _validation_error(
                    name, "Input should be a valid integer", "int_parsing", where="query"
                )
        page_size = min(max(numbers["page_size"], 1), 1000)
        after_date = numbers["date_after_unix"]
        items = [i for i in own_history(key) if i["date_unix"] >= after_date
                 and query.get("voice_id") in (None, i["voice_id"])]  # fmt: skip
        after = query.get("start_after_history_item_id")
        if after:
            ids = [i["history_item_id"] for i in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:page_size]
        shown = [{k: v for k, v in i.items() if k not in ("owner", "audio")} for i in page]
        return JSONResponse({
            "history": shown, "has_more": len(items) > page_size,
            "last_history_item_id": page[-1]["history_item_id"] if page else None,
        })  # fmt: skip

    async def history_audio(request: Request) -> Response:
        key = _key(request)
        if key is None:
            return _unauthorized()
        wanted = request.path_params["history_item_id"]
        for item in own_history(key):
            if item["history_item_id"] == wanted:
                return Response(item["audio"], media_type="audio/mpeg")
        return _error(404, "history_item_not_found", f"History item {wanted} was not found.")

    return [
        Route("/v1/user", get_user, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v2/voices", list_voices, methods=["GET"]),
        Route("/v1/text-to-speech/{voice_id}", text_to_speech, methods=["POST"]),
        Route("/v1/history", list_history, methods=["GET"]),
        Route("/v1/history/{history_item_id}/audio", history_audio, methods=["GET"]),
    ]
