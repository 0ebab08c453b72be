"""Murf: request shapes per the reference, error mapping, voice filters, speech in the sandbox."""

from __future__ import annotations

import base64
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
    JobFailed,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.audio.murf import MurfProvider
from arkyra.providers.audio.speech import SpeechRequest, SpeechResult
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import murf as emulator

REAL = "https://api.murf.ai"
CDN = "https://murf.ai/user-upload/one-day-temp/abc.mp3"
KEY = "ap2_murf_test_7d3c1b9e2a"
CREDS = {"api_key": KEY, "label": "Narration"}
AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + b"m" * 300
VOICES = [
    {"voiceId": "en-US-natalie", "displayName": "Natalie (F)", "locale": "en-US",
     "displayLanguage": "English", "accent": "US", "gender": "Female", "description": "d",
     "availableStyles": ["Promo"], "supportedLocales": {"en-US": {}, "es-ES": {}}},
    {"voiceId": "en-US-ken", "displayName": "Ken (M)", "locale": "en-US",
     "displayLanguage": "English", "accent": "US", "gender": "Male", "description": "d",
     "availableStyles": [], "supportedLocales": {"en-US": {}}},
    {"voiceId": "de-DE-matthias", "displayName": "Matthias (M)", "locale": "de-DE",
     "displayLanguage": "Deutsch", "accent": "German", "gender": "Male", "description": "d",
     "availableStyles": [], "supportedLocales": {"de-DE": {}}},
]  # fmt: skip


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


def generated(**extra: object) -> dict:
    body: dict = {
        "audioFile": CDN,
        "audioLengthInSeconds": 1.25,
        "consumedCharacterCount": 11,
        "remainingCharacterCount": 9989,
        "wordDurations": [],
    }
    body.update(extra)
    return body


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[MurfProvider]:
    """The provider pointed at the real vendor URL (respx intercepts), one attempt per call."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("murf", settings=real_settings, client=client)
        assert isinstance(provider, MurfProvider)
        yield provider


def test_catalogue_entry() -> None:
    assert MurfProvider.identifier == "murf"
    assert MurfProvider.category == "audio"
    assert [f.name for f in MurfProvider.fields] == ["api_key"]
    assert MurfProvider.default_base_url == REAL
    assert set(MurfProvider.exposed) == {"voices"}


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_gets_a_token(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/auth/token").respond(
            200, json={"token": "secret-session-token", "expiryInEpochMillis": 1_900_000_000_000}
        )
        account = await real.check_connection(CREDS)
    assert route.calls.last.request.headers["api-key"] == KEY
    assert account.id == real.fingerprint(KEY)
    assert KEY not in account.id
    assert account.name == "Narration"
    assert "secret-session-token" not in repr(account)


async def test_check_connection_without_label_uses_title(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/auth/token").respond(200, json={"token": "t", "expiryInEpochMillis": 1})
        account = await real.check_connection({"api_key": KEY})
    assert account.name == "Murf"


async def test_send_data_asks_for_inline_audio_and_stores_it(real: MurfProvider) -> None:
    encoded = base64.b64encode(AUDIO).decode()
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/speech/generate").respond(200, json=generated(encodedAudio=encoded))
        result = await real.send_data(
            CREDS,
            {
                "text": "Hello there",
                "voice_id": "en-US-natalie",
                "format": "WAV",
                "sample_rate": 44100,
                "channel_type": "MONO",
                "style": "Promo",
                "speed": 1.2,
                "pitch": -5,
                "language": "en-US",
                "model": "GEN2",
            },
        )
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["api-key"] == KEY
    assert json.loads(request.content) == {
        "text": "Hello there",
        "voiceId": "en-US-natalie",
        "format": "WAV",
        "encodeAsBase64": True,
        "sampleRate": 44100,
        "channelType": "MONO",
        "style": "Promo",
        "rate": 20,
        "pitch": -5,
        "locale": "en-US",
        "modelVersion": "GEN2",
    }
    assert isinstance(result, SpeechResult)
    assert result.provider == "murf"
    assert result.characters == 11
    assert result.duration_seconds == 1.25
    assert result.media.content_type == "audio/wav"
    assert result.media.path.suffix == ".wav"
    assert result.media.path.read_bytes() == AUDIO


async def test_send_data_minimal_body(real: MurfProvider) -> None:
    encoded = base64.b64encode(AUDIO).decode()
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/speech/generate").respond(
            200, json=generated(encodedAudio=encoded, consumedCharacterCount=None)
        )
        result = await real.send_data(CREDS, {"text": "Hi", "voice_id": "en-US-ken", "rate": -3})
    assert json.loads(route.calls.last.request.content) == {
        "text": "Hi",
        "voiceId": "en-US-ken",
        "format": "MP3",
        "encodeAsBase64": True,
        "rate": -3,
    }
    assert result.characters == 2
    assert result.media.content_type == "audio/mpeg"


async def test_send_data_downloads_audio_file_without_the_key(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/speech/generate").respond(200, json=generated())
        download = mock.get(CDN).respond(200, content=AUDIO, headers={"content-type": "audio/mpeg"})
        result = await real.send_data(CREDS, {"text": "Hello there", "voice_id": "en-US-ken"})
    assert "api-key" not in download.calls.last.request.headers
    assert result.media.path.read_bytes() == AUDIO


async def test_failed_download_is_a_job_failure(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/speech/generate").respond(200, json=generated())
        mock.get(CDN).respond(403, text="<Error><Code>AccessDenied</Code></Error>")
        with pytest.raises(JobFailed):
            await real.send_data(CREDS, {"text": "Hello", "voice_id": "en-US-ken"})


async def test_download_5xx_is_transient(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/speech/generate").respond(200, json=generated())
        mock.get(CDN).respond(503)
        with pytest.raises(Transient):
            await real.send_data(CREDS, {"text": "Hello", "voice_id": "en-US-ken"})


async def test_oversized_download_is_refused(settings: Settings, tmp_path) -> None:
    from arkyra.media import MediaStore

    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = MurfProvider(
            settings=real_settings, client=client, media_store=MediaStore(tmp_path, max_bytes=100)
        )
        with respx.mock(base_url=REAL) as mock:
            mock.post("/v1/speech/generate").respond(200, json=generated())
            mock.get(CDN).respond(200, content=AUDIO)
            with pytest.raises(JobFailed, match="larger than"):
                await provider.send_data(CREDS, {"text": "Hello", "voice_id": "en-US-ken"})
    assert list(tmp_path.iterdir()) == []


async def test_response_without_audio_is_transient(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/speech/generate").respond(200, json=generated(audioFile=None))
        with pytest.raises(Transient, match="neither"):
            await real.send_data(CREDS, {"text": "Hello", "voice_id": "en-US-ken"})


@pytest.mark.parametrize(
    "data",
    [
        {"text": "hi", "voice_id": "en-US-ken", "format": "ALAW"},
        {"text": "hi", "voice_id": "en-US-ken", "sample_rate": 12345},
        {"text": "hi", "voice_id": "en-US-ken", "rate": 80},
        {"voice_id": "en-US-ken"},
    ],
)
async def test_invalid_speech_requests_send_nothing(real: MurfProvider, data: dict) -> None:
    with respx.mock(base_url=REAL) as mock, pytest.raises(InvalidInput):
        await real.send_data(CREDS, data)
    assert not mock.calls


async def test_voices_are_filtered_here_not_truncated(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/speech/voices").respond(200, json=VOICES)
        everything = await real.call("voices", CREDS, {})
        male = await real.call("voices", CREDS, {"gender": "male"})
        spanish = await real.call("voices", CREDS, {"locale": "es-es"})
        german_female = await real.call("voices", CREDS, {"locale": "de-DE", "gender": "Female"})
        await real.call("voices", CREDS, {"model": "GEN2"})
    assert route.calls[0].request.headers["api-key"] == KEY
    assert "model" not in route.calls[0].request.url.params
    assert route.calls.last.request.url.params["model"] == "GEN2"
    assert [v["id"] for v in everything] == ["en-US-natalie", "en-US-ken", "de-DE-matthias"]
    assert [v["id"] for v in male] == ["en-US-ken", "de-DE-matthias"]
    assert [v["id"] for v in spanish] == ["en-US-natalie"]
    assert german_female == []
    assert everything[0]["name"] == "Natalie (F)"
    assert everything[0]["language"] == "en-US"
    assert everything[0]["labels"]["supported_locales"] == ["en-US", "es-ES"]


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (400, '{"errorMessage": "Invalid voice id", "errorCode": 400}', BadRequest),
        (401, '{"errorMessage": "Invalid api-key", "errorCode": 401}', InvalidCredentials),
        (402, '{"errorMessage": "Character limit exhausted", "errorCode": 402}', QuotaExhausted),
        (403, "Forbidden", InvalidCredentials),
        (429, '{"message": "slow down"}', RateLimited),
        (500, "Internal Server Error", Transient),
        (503, "<html>Service Unavailable</html>", Transient),
    ],
)
async def test_errors_are_mapped(
    real: MurfProvider, status: int, content: str, expected: type[ProviderError]
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v1/speech/generate").respond(status, content=content)
        with pytest.raises(ProviderError) as caught:
            await real.send_data(CREDS, {"text": "hi", "voice_id": "en-US-ken"})
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.provider == "murf"
    assert caught.value.message  # the vendor's words, JSON or raw
    assert_secret_free(caught.value)


async def test_error_message_is_read_from_json_or_text(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/auth/token")
        route.respond(401, json={"errorMessage": "Invalid api-key", "errorCode": 401})
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
        assert caught.value.message == "Invalid api-key"
        assert caught.value.code == 401
        route.respond(401, text="Unauthorized access")
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
        assert caught.value.message == "Unauthorized access"


async def test_a_vendor_echoing_the_key_is_redacted(real: MurfProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/auth/token").respond(401, text=f"api-key {KEY} is not valid")
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
    assert_secret_free(caught.value)


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("rate_limit", 429, RateLimited), ("error", 503, Transient), ("error", 500, Transient)],
)
async def test_emulator_fault_bodies_map_to_the_taxonomy(
    real: MurfProvider, kind: str, status: int, expected: type[ProviderError]
) -> None:
    emulated = emulator.error_response(kind, status, 1.0)
    response = httpx.Response(
        emulated.status_code, content=emulated.body, headers=dict(emulated.headers)
    )
    assert type(real.error_from_response(response)) is expected


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandboxed(provider_factory: Callable[[str], ThirdPartyProvider]) -> MurfProvider:
    provider = provider_factory("murf")
    assert isinstance(provider, MurfProvider)
    return provider


async def test_sandbox_connect(sandboxed: MurfProvider) -> None:
    account = await sandboxed.check_connection(CREDS)
    assert account.id == sandboxed.fingerprint(KEY)
    assert account.name == "Narration"
    with pytest.raises(InvalidCredentials) as caught:
        await sandboxed.check_connection({"api_key": "invalid-murf-key"})
    assert "invalid-murf-key" not in str(caught.value)


async def test_sandbox_voices_and_filters(sandboxed: MurfProvider) -> None:
    voices = await sandboxed.call("voices", CREDS, {})
    assert [v["id"] for v in voices] == [v["voiceId"] for v in emulator.VOICES]
    female = await sandboxed.call("voices", CREDS, {"gender": "Female", "locale": "en-US"})
    assert [v["id"] for v in female] == ["en-US-natalie"]


async def test_sandbox_synthesis_stores_the_audio(
    sandboxed: MurfProvider, sandbox_state: SandboxState, settings: Settings
) -> None:
    text = "Welcome to the ARKYRA sandbox."
    result = await sandboxed.send_data(CREDS, {"text": text, "voice_id": "en-US-ken"})
    expected = emulator.fake_audio(text, "en-US-ken")
    assert result.media.path.is_file()
    assert result.media.path.read_bytes() == expected
    assert result.media.path.parent == settings.home / "media"
    assert result.characters == len(text)
    assert result.duration_seconds is not None
    assert sandbox_state.paid_calls["murf"] == 1


async def test_sandbox_audio_file_download_path(
    sandboxed: MurfProvider, sandbox_client: httpx.AsyncClient
) -> None:
    """The emulator's ``audioFile`` serves the same bytes, without a key."""
    response = await sandbox_client.post(
        "/murf/v1/speech/generate",
        headers={"api-key": KEY},
        json={"text": "Download me", "voiceId": "en-US-natalie"},
    )
    body = response.json()
    assert "encodedAudio" not in body
    audio, media_type = await sandboxed.download_audio(body["audioFile"])
    assert audio == emulator.fake_audio("Download me", "en-US-natalie")
    assert media_type == "audio/mpeg"


async def test_sandbox_quota_and_bad_voice_are_not_paid(
    sandboxed: MurfProvider, sandbox_state: SandboxState
) -> None:
    with pytest.raises(QuotaExhausted):
        await sandboxed.send_data({"api_key": "noquota-1"}, {"text": "hi", "voice_id": "en-US-ken"})
    with pytest.raises(BadRequest, match="voice"):
        await sandboxed.send_data(CREDS, {"text": "hi", "voice_id": "xx-XX-nobody"})
    assert sandbox_state.paid_calls["murf"] == 0


async def test_sandbox_injected_server_errors_are_transient(
    settings: Settings, sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    provider = get_provider(
        "murf", settings=settings.model_copy(update={"http_max_attempts": 1}), client=sandbox_client
    )
    sandbox_state.faults_for("murf").update({"error_rate": 1.0, "error_status": 503})
    with pytest.raises(Transient) as caught:
        await provider.send_data(CREDS, {"text": "hi", "voice_id": "en-US-ken"})
    assert caught.value.status == 503
    assert sandbox_state.paid_calls["murf"] == 0


async def test_provider_neutral_request_is_understood(real: MurfProvider) -> None:
    """A request written for any voice provider (lower-case format) works here."""
    neutral = SpeechRequest(text="Hi", voice_id="en-US-ken", format="wav", speed=0.9)
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/speech/generate").respond(
            200, json=generated(encodedAudio=base64.b64encode(AUDIO).decode())
        )
        result = await real.send_data(CREDS, neutral)
    body = json.loads(route.calls.last.request.content)
    assert body["format"] == "WAV"
    assert body["rate"] == -10
    assert result.media.content_type == "audio/wav"
