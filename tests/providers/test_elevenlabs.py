"""ElevenLabs: request shapes per the reference, error mapping, paging, speech in the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.media import MediaStore
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.audio.elevenlabs import ElevenLabsProvider
from arkyra.providers.audio.speech import SpeechRequest, SpeechResult
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import elevenlabs as emulator

REAL = "https://api.elevenlabs.io"
KEY = "sk_el_test_5f1c2e9a7b3d"
CREDS = {"api_key": KEY, "label": "Studio"}
VOICE = "21m00Tcm4TlvDq8ikWAM"
AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + b"a" * 200


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


def voice(n: int, category: str = "premade") -> dict:
    return {
        "voice_id": f"v{n}",
        "name": f"Voice {n}",
        "category": category,
        "labels": {"gender": "female", "language": "en", "accent": "british"},
        "description": "d",
        "preview_url": f"https://cdn.example/{n}.mp3",
        "settings": {},
    }


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[ElevenLabsProvider]:
    """The provider pointed at the real vendor URL (respx intercepts), one attempt per call."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("elevenlabs", settings=real_settings, client=client)
        assert isinstance(provider, ElevenLabsProvider)
        yield provider


# -- catalogue -------------------------------------------------------------------------------


def test_catalogue_entry() -> None:
    assert ElevenLabsProvider.identifier == "elevenlabs"
    assert ElevenLabsProvider.category == "audio"
    assert [f.name for f in ElevenLabsProvider.fields] == ["api_key"]
    assert ElevenLabsProvider.default_base_url == REAL
    assert set(ElevenLabsProvider.exposed) == {"voices", "models"}
    assert ElevenLabsProvider.deprecated is False


def test_media_store_can_be_injected(settings: Settings, tmp_path) -> None:
    store = MediaStore(tmp_path / "elsewhere")
    provider = ElevenLabsProvider(settings=settings, media_store=store)
    assert provider.media_store is store
    assert ElevenLabsProvider(settings=settings).media_store.root == settings.home / "media"


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_reads_the_user(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/user").respond(
            200, json={"user_id": "u_123", "first_name": "Ada", "subscription": {"tier": "pro"}}
        )
        account = await real.check_connection(CREDS)
    assert route.calls.last.request.headers["xi-api-key"] == KEY
    assert (account.id, account.name) == ("u_123", "Ada")


async def test_check_connection_without_first_name_uses_user_id(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/user").respond(200, json={"user_id": "u_123", "first_name": None})
        account = await real.check_connection({"api_key": KEY})
    assert (account.id, account.name) == ("u_123", "u_123")


async def test_scoped_key_falls_back_to_models(real: ElevenLabsProvider) -> None:
    missing = {"detail": {"status": "missing_permissions", "message": "needs user_read"}}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/user").respond(401, json=missing)
        models = mock.get("/v1/models").respond(200, json=[])
        account = await real.check_connection(CREDS)
    assert models.called
    assert models.calls.last.request.headers["xi-api-key"] == KEY
    assert account.id == real.fingerprint(KEY)
    assert KEY not in account.id
    assert account.name == "Studio"


async def test_scoped_key_without_label_is_named_by_title(real: ElevenLabsProvider) -> None:
    missing = {"detail": {"status": "missing_permissions", "message": "needs user_read"}}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/user").respond(401, json=missing)
        mock.get("/v1/models").respond(200, json=[])
        account = await real.check_connection({"api_key": KEY})
    assert account.name == "ElevenLabs"


async def test_invalid_key_does_not_fall_back(real: ElevenLabsProvider) -> None:
    invalid = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        mock.get("/v1/user").respond(401, json=invalid)
        models = mock.get("/v1/models").respond(200, json=[])
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
    assert not models.called
    assert caught.value.code == "invalid_api_key"
    assert_secret_free(caught.value)


async def test_missing_api_key_is_invalid_credentials(real: ElevenLabsProvider) -> None:
    with pytest.raises(InvalidCredentials, match="api_key"):
        await real.check_connection({"label": "no key"})


async def test_send_data_posts_text_and_stores_the_audio(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v1/text-to-speech/{VOICE}").respond(
            200, content=AUDIO, headers={"content-type": "audio/mpeg"}
        )
        result = await real.send_data(
            CREDS,
            {
                "text": "Hello there",
                "voice_id": VOICE,
                "model": "eleven_multilingual_v2",
                "language": "en",
                "speed": 1.1,
                "stability": 0.4,
                "similarity_boost": 0.8,
                "seed": 7,
            },
        )
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.params["output_format"] == "mp3_44100_128"
    assert request.headers["xi-api-key"] == KEY
    assert json.loads(request.content) == {
        "text": "Hello there",
        "model_id": "eleven_multilingual_v2",
        "language_code": "en",
        "seed": 7,
        "voice_settings": {"stability": 0.4, "similarity_boost": 0.8, "speed": 1.1},
    }
    assert isinstance(result, SpeechResult)
    assert result.provider == "elevenlabs"
    assert result.voice_id == VOICE
    assert result.characters == len("Hello there")
    assert result.media.content_type == "audio/mpeg"
    assert result.media.path.suffix == ".mp3"
    assert result.media.path.read_bytes() == AUDIO


async def test_send_data_minimal_body_and_pcm_format(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v1/text-to-speech/{VOICE}").respond(200, content=b"\x00\x01" * 50)
        result = await real.send_data(
            CREDS, SpeechRequest(text="Hi", voice_id=VOICE, format="pcm_16000")
        )
    request = route.calls.last.request
    assert request.url.params["output_format"] == "pcm_16000"
    assert json.loads(request.content) == {"text": "Hi"}
    assert result.media.content_type == "audio/pcm"
    assert result.media.path.suffix == ".pcm"


@pytest.mark.parametrize(
    "data",
    [
        {"text": "", "voice_id": VOICE},
        {"text": "hi", "voice_id": "../v1/user"},
        {"text": "hi", "voice_id": VOICE, "format": "wav; rm"},
        {"text": "hi", "voice_id": VOICE, "unknown": 1},
    ],
)
async def test_invalid_speech_requests_send_nothing(real: ElevenLabsProvider, data: dict) -> None:
    with respx.mock(base_url=REAL) as mock, pytest.raises(InvalidInput):
        await real.send_data(CREDS, data)
    assert not mock.calls


async def test_voices_follow_next_page_token_with_filters(real: ElevenLabsProvider) -> None:
    pages = [
        {"voices": [voice(1), voice(2)], "has_more": True, "total_count": 3,
         "next_page_token": "tok-2"},
        {"voices": [voice(3, "cloned")], "has_more": False, "total_count": 3,
         "next_page_token": None},
    ]  # fmt: skip
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v2/voices").mock(
            side_effect=[httpx.Response(200, json=page) for page in pages]
        )
        voices = await real.call(
            "voices", CREDS, {"search": "voice", "voice_type": "personal", "page_size": 2}
        )
    first, second = (call.request.url.params for call in route.calls)
    assert dict(first) == {"page_size": "2", "search": "voice", "voice_type": "personal"}
    assert second["next_page_token"] == "tok-2"
    assert second["search"] == "voice"
    assert all(call.request.headers["xi-api-key"] == KEY for call in route.calls)
    assert [v["id"] for v in voices] == ["v1", "v2", "v3"]
    assert voices[2]["category"] == "cloned"
    assert voices[0]["gender"] == "female"
    assert voices[0]["preview_url"].endswith("/1.mp3")


async def test_voices_category_filter_is_sent(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v2/voices").respond(200, json={"voices": [], "has_more": False})
        assert await real.call("voices", CREDS, {"category": "professional"}) == []
    assert route.calls.last.request.url.params["category"] == "professional"
    assert route.calls.last.request.url.params["page_size"] == "100"


async def test_voices_input_is_validated(real: ElevenLabsProvider) -> None:
    with pytest.raises(InvalidInput):
        await real.call("voices", CREDS, {"category": "everything"})


async def test_models(real: ElevenLabsProvider) -> None:
    body = [
        {
            "model_id": "eleven_multilingual_v2",
            "name": "Multilingual v2",
            "description": "d",
            "can_do_text_to_speech": True,
            "languages": [{"language_id": "en", "name": "English"}],
            "max_characters_request_subscribed_user": 10000,
        }
    ]
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/models").respond(200, json=body)
        models = await real.call("models", CREDS, {})
    assert route.calls.last.request.headers["xi-api-key"] == KEY
    assert models == [
        {
            "model_id": "eleven_multilingual_v2",
            "name": "Multilingual v2",
            "description": "d",
            "can_do_text_to_speech": True,
            "languages": ["en"],
            "max_characters": 10000,
        }
    ]


# -- errors ----------------------------------------------------------------------------------


def detail(status: str, message: str = "vendor says no") -> dict:
    return {"detail": {"status": status, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "code"),
    [
        (401, detail("invalid_api_key", "Invalid API key"), {}, InvalidCredentials,
         "invalid_api_key"),
        (401, detail("quota_exceeded"), {}, QuotaExhausted, "quota_exceeded"),
        (429, detail("too_many_concurrent_requests"), {}, RateLimited,
         "too_many_concurrent_requests"),
        (429, detail("system_busy"), {"Retry-After": "7"}, RateLimited, "system_busy"),
        (400, detail("voice_not_found"), {}, BadRequest, "voice_not_found"),
        (400, detail("max_character_limit_exceeded"), {}, BadRequest,
         "max_character_limit_exceeded"),
        (403, detail("forbidden"), {}, InvalidCredentials, "forbidden"),
        (500, detail("internal_error"), {}, Transient, "internal_error"),
        (503, "upstream unavailable", {}, Transient, None),
    ],
)  # fmt: skip
async def test_errors_are_mapped(
    real: ElevenLabsProvider,
    status: int,
    body: dict | str,
    headers: dict,
    expected: type[ProviderError],
    code: str | None,
) -> None:
    content = json.dumps(body) if isinstance(body, dict) else body
    with respx.mock(base_url=REAL) as mock:
        mock.post(f"/v1/text-to-speech/{VOICE}").respond(status, content=content, headers=headers)
        with pytest.raises(ProviderError) as caught:
            await real.send_data(CREDS, {"text": "hi", "voice_id": VOICE})
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.status == status
    assert caught.value.provider == "elevenlabs"
    assert_secret_free(caught.value)


async def test_system_busy_keeps_retry_after(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post(f"/v1/text-to-speech/{VOICE}").respond(
            429, json=detail("system_busy"), headers={"Retry-After": "7"}
        )
        with pytest.raises(RateLimited) as caught:
            await real.send_data(CREDS, {"text": "hi", "voice_id": VOICE})
    assert caught.value.retry_after == 7
    assert caught.value.message == "vendor says no"


async def test_validation_error_lists_the_fields(real: ElevenLabsProvider) -> None:
    body = {
        "detail": [
            {"loc": ["body", "text"], "msg": "Field required", "type": "missing"},
            {"loc": ["query", "output_format"], "msg": "bad format", "type": "value_error"},
        ]
    }
    with respx.mock(base_url=REAL) as mock:
        mock.post(f"/v1/text-to-speech/{VOICE}").respond(422, json=body)
        with pytest.raises(BadRequest) as caught:
            await real.send_data(CREDS, {"text": "hi", "voice_id": VOICE})
    assert caught.value.status == 422
    assert "body.text: Field required" in caught.value.message
    assert "query.output_format: bad format" in caught.value.message


async def test_a_vendor_echoing_the_key_is_redacted(real: ElevenLabsProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/user").respond(401, json=detail("invalid_api_key", f"key {KEY} is bad"))
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
    assert_secret_free(caught.value)
    assert "[redacted]" in caught.value.message


async def test_transient_errors_are_retried_on_get(settings: Settings) -> None:
    retrying = settings.model_copy(update={"sandbox": False, "http_max_attempts": 2})
    async with httpx.AsyncClient() as client:
        provider = get_provider("elevenlabs", settings=retrying, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/v1/user").mock(
                side_effect=[
                    httpx.Response(503, json=detail("busy")),
                    httpx.Response(200, json={"user_id": "u_1"}),
                ]
            )
            account = await provider.check_connection(CREDS)
    assert route.call_count == 2
    assert account.id == "u_1"


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("rate_limit", 429, RateLimited), ("error", 503, Transient), ("error", 500, Transient)],
)
async def test_emulator_fault_bodies_map_to_the_taxonomy(
    real: ElevenLabsProvider, kind: str, status: int, expected: type[ProviderError]
) -> None:
    emulated = emulator.error_response(kind, status, 1.0)
    response = httpx.Response(
        emulated.status_code, content=emulated.body, headers=dict(emulated.headers)
    )
    error = real.error_from_response(response)
    assert type(error) is expected
    assert json.loads(emulated.body)["detail"]["status"]


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandboxed(provider_factory: Callable[[str], ThirdPartyProvider]) -> ElevenLabsProvider:
    provider = provider_factory("elevenlabs")
    assert isinstance(provider, ElevenLabsProvider)
    return provider


@pytest.fixture
def single_attempt(settings: Settings, sandbox_client: httpx.AsyncClient) -> ElevenLabsProvider:
    once = settings.model_copy(update={"http_max_attempts": 1})
    provider = get_provider("elevenlabs", settings=once, client=sandbox_client)
    assert isinstance(provider, ElevenLabsProvider)
    return provider


async def test_sandbox_connect(sandboxed: ElevenLabsProvider) -> None:
    account = await sandboxed.check_connection({"api_key": "sk_sandbox_one"})
    assert account.id.startswith("user_")
    assert account.name == "Sandbox"
    again = await sandboxed.check_connection({"api_key": "sk_sandbox_one"})
    assert again == account


async def test_sandbox_scoped_key_uses_models(
    sandboxed: ElevenLabsProvider, sandbox_state: SandboxState
) -> None:
    account = await sandboxed.check_connection({"api_key": "scoped_key_1", "label": "Ops"})
    assert account.id == sandboxed.fingerprint("scoped_key_1")
    assert account.name == "Ops"
    assert sandbox_state.calls["elevenlabs GET /elevenlabs/v1/models"] == 1


async def test_sandbox_invalid_key(sandboxed: ElevenLabsProvider) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await sandboxed.check_connection({"api_key": "invalid_key_9876"})
    assert "invalid_key_9876" not in str(caught.value)


async def test_sandbox_voices_across_pages(
    sandboxed: ElevenLabsProvider, sandbox_state: SandboxState
) -> None:
    voices = await sandboxed.call("voices", CREDS, {"page_size": 10})
    assert [v["id"] for v in voices] == [v["voice_id"] for v in emulator.VOICES]
    assert len(voices) == len(emulator.VOICES) > 20
    assert sandbox_state.calls["elevenlabs GET /elevenlabs/v2/voices"] == 3


async def test_sandbox_voice_filters(sandboxed: ElevenLabsProvider) -> None:
    cloned = await sandboxed.call("voices", CREDS, {"category": "cloned", "page_size": 2})
    assert cloned
    assert {v["category"] for v in cloned} == {"cloned"}
    default = await sandboxed.call("voices", CREDS, {"voice_type": "default"})
    assert default
    assert {v["category"] for v in default} == {"premade"}
    found = await sandboxed.call("voices", CREDS, {"search": "rachel"})
    assert found
    assert all("Rachel" in v["name"] for v in found)


async def test_sandbox_models(sandboxed: ElevenLabsProvider) -> None:
    models = await sandboxed.call("models", CREDS, {})
    assert "eleven_multilingual_v2" in {m["model_id"] for m in models}


async def test_sandbox_synthesis_stores_the_audio(
    sandboxed: ElevenLabsProvider, sandbox_state: SandboxState, settings: Settings
) -> None:
    voice_id = emulator.VOICES[0]["voice_id"]
    text = "Welcome to the ARKYRA sandbox, where every voice is free."
    result = await sandboxed.send_data(CREDS, {"text": text, "voice_id": voice_id})
    expected = emulator.fake_mp3(text, voice_id)
    assert result.media.path.is_file()
    assert result.media.path.read_bytes() == expected
    assert result.media.path.parent == settings.home / "media"
    assert result.media.size == len(expected)
    assert result.characters == len(text)
    assert sandbox_state.paid_calls["elevenlabs"] == 1


async def test_sandbox_same_speech_twice_keeps_one_file(sandboxed: ElevenLabsProvider) -> None:
    voice_id = emulator.VOICES[1]["voice_id"]
    first = await sandboxed.send_data(CREDS, {"text": "Same words", "voice_id": voice_id})
    second = await sandboxed.send_data(CREDS, {"text": "Same words", "voice_id": voice_id})
    assert first.media.path == second.media.path
    assert len(list(first.media.path.parent.iterdir())) == 1


@pytest.mark.parametrize(
    ("key", "text", "voice_id", "expected", "code"),
    [
        ("noquota_key_1", "hello", emulator.VOICES[0]["voice_id"], QuotaExhausted,
         "quota_exceeded"),
        ("sk_ok_key_1", "[busy] hello", emulator.VOICES[0]["voice_id"], RateLimited,
         "system_busy"),
        ("sk_ok_key_1", "[concurrent] hi", emulator.VOICES[0]["voice_id"], RateLimited,
         "too_many_concurrent_requests"),
        ("sk_ok_key_1", "hello", "nosuchvoice", BadRequest, "voice_not_found"),
    ],
)  # fmt: skip
async def test_sandbox_synthesis_errors_are_not_paid(
    single_attempt: ElevenLabsProvider,
    sandbox_state: SandboxState,
    key: str,
    text: str,
    voice_id: str,
    expected: type[ProviderError],
    code: str,
) -> None:
    with pytest.raises(ProviderError) as caught:
        await single_attempt.send_data({"api_key": key}, {"text": text, "voice_id": voice_id})
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert key not in str(caught.value)
    assert sandbox_state.paid_calls["elevenlabs"] == 0


async def test_sandbox_injected_rate_limit(
    single_attempt: ElevenLabsProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("elevenlabs").update(
        {"rate_limit_rate": 1.0, "retry_after_seconds": 3}
    )
    with pytest.raises(RateLimited) as caught:
        await single_attempt.call("models", CREDS, {})
    assert caught.value.retry_after == 3
    assert caught.value.code == "system_busy"


async def test_provider_neutral_request_is_understood(real: ElevenLabsProvider) -> None:
    """A request written for any voice provider (short format, regional language) works here."""
    neutral = SpeechRequest(text="Hola", voice_id=VOICE, format="MP3", language="es-ES")
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v1/text-to-speech/{VOICE}").respond(200, content=AUDIO)
        result = await real.send_data(CREDS, neutral)
    request = route.calls.last.request
    assert request.url.params["output_format"] == "mp3_44100_128"
    assert json.loads(request.content) == {"text": "Hola", "language_code": "es"}
    assert result.media.content_type == "audio/mpeg"
