"""PlayHT (deprecated): request shapes per the reference, errors, jobs, speech in the sandbox."""

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
    JobDeadlineExceeded,
    JobFailed,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, catalogue_entry, get_provider
from arkyra.providers.audio.playht import PlayHTProvider
from arkyra.providers.audio.speech import SpeechRequest, SpeechResult
from arkyra.providers.jobs import JobStatus
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import playht as emulator

REAL = "https://api.play.ht"
CDN = "https://peregrine-results.s3.amazonaws.com/pigeon/job-1.mp3"
USER = "u-9f2c1a"
KEY = "playht-secret-3b8e0c4d"
CREDS = {"user_id": USER, "api_key": KEY, "label": "Legacy"}
VOICE = "s3://voice-cloning-zero-shot/d9ff78ba/original/manifest.json"
AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + b"p" * 300


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


def job(output: dict | None = None, **extra: object) -> dict:
    body: dict = {
        "id": "job-1",
        "created": "2025-06-01T10:00:00Z",
        "input": {"text": "Hello", "voice": VOICE},
        "output": output,
        "_links": [],
    }
    body.update(extra)
    return body


DONE = {"duration": 2.5, "size": len(AUDIO), "url": CDN}


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[PlayHTProvider]:
    """The provider pointed at the real vendor URL (respx intercepts), one attempt per call."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("playht", settings=real_settings, client=client)
        assert isinstance(provider, PlayHTProvider)
        yield provider


def test_catalogue_marks_playht_deprecated() -> None:
    entry = catalogue_entry(PlayHTProvider)
    assert entry["identifier"] == "playht"
    assert entry["category"] == "audio"
    assert entry["deprecated"] is True
    assert "shutdown" in entry["description"].lower()
    fields = {f["name"]: f for f in entry["fields"]}
    assert list(fields) == ["user_id", "api_key"]
    assert fields["user_id"]["kind"] == "text"
    assert fields["api_key"]["secret"] is True
    assert PlayHTProvider.default_base_url == REAL


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_lists_cloned_voices(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/api/v2/cloned-voices").respond(200, json=[])
        account = await real.check_connection(CREDS)
    headers = route.calls.last.request.headers
    assert headers["X-USER-ID"] == USER
    assert headers["AUTHORIZATION"] == KEY
    assert headers["accept"] == "application/json"
    assert account.id == USER
    assert account.name == "Legacy"


async def test_check_connection_needs_both_fields(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        with pytest.raises(InvalidCredentials, match="user_id"):
            await real.check_connection({"api_key": KEY})
        with pytest.raises(InvalidCredentials, match="api_key"):
            await real.check_connection({"user_id": USER})
    assert not mock.calls


async def test_send_data_creates_a_job_polls_and_stores(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        create = mock.post("/api/v2/tts").respond(
            201, json=job(), headers={"Location": "/api/v2/tts/job-1"}
        )
        poll = mock.get("/api/v2/tts/job-1").mock(
            side_effect=[httpx.Response(200, json=job()), httpx.Response(200, json=job(DONE))]
        )
        download = mock.get(CDN).respond(200, content=AUDIO, headers={"content-type": "audio/mpeg"})
        result = await real.send_data(
            CREDS,
            {
                "text": "Hello",
                "voice_id": VOICE,
                "model": "Play3.0-mini",
                "format": "mp3",
                "quality": "high",
                "speed": 1.1,
                "sample_rate": 24000,
                "seed": 3,
                "temperature": 0.5,
                "emotion": "female_happy",
                "language": "english",
            },
        )
    request = create.calls.last.request
    assert request.headers["accept"] == "application/json"
    assert request.headers["X-USER-ID"] == USER
    assert request.headers["AUTHORIZATION"] == KEY
    assert json.loads(request.content) == {
        "text": "Hello",
        "voice": VOICE,
        "voice_engine": "Play3.0-mini",
        "output_format": "mp3",
        "quality": "high",
        "speed": 1.1,
        "sample_rate": 24000,
        "seed": 3,
        "temperature": 0.5,
        "emotion": "female_happy",
    }
    assert poll.call_count == 2
    assert poll.calls.last.request.headers["AUTHORIZATION"] == KEY
    assert "AUTHORIZATION" not in download.calls.last.request.headers
    assert "X-USER-ID" not in download.calls.last.request.headers
    assert isinstance(result, SpeechResult)
    assert result.provider == "playht"
    assert result.duration_seconds == 2.5
    assert result.characters == 5
    assert result.media.path.read_bytes() == AUDIO
    assert result.media.content_type == "audio/mpeg"


async def test_send_data_minimal_body_uses_the_default_engine(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        create = mock.post("/api/v2/tts").respond(201, json=job(DONE))
        poll = mock.get("/api/v2/tts/job-1").respond(200, json=job(DONE))
        mock.get(CDN).respond(200, content=AUDIO)
        result = await real.send_data(CREDS, {"text": "Hi", "voice_id": VOICE, "format": "wav"})
    assert json.loads(create.calls.last.request.content) == {
        "text": "Hi",
        "voice": VOICE,
        "voice_engine": "PlayHT2.0",
        "output_format": "wav",
    }
    assert not poll.called  # the 201 already carried the result
    assert result.media.content_type == "audio/wav"


async def test_failed_job_raises_job_failed(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/api/v2/tts").respond(201, json=job())
        mock.get("/api/v2/tts/job-1").respond(200, json=job(error={"message": "voice gone"}))
        with pytest.raises(JobFailed, match="voice gone") as caught:
            await real.send_data(CREDS, {"text": "Hi", "voice_id": VOICE})
    assert caught.value.details["job_id"] == "job-1"


async def test_job_past_the_deadline(settings: Settings) -> None:
    quick = settings.model_copy(
        update={"sandbox": False, "http_max_attempts": 1, "job_deadline_seconds": 0.05}
    )
    async with httpx.AsyncClient() as client:
        provider = get_provider("playht", settings=quick, client=client)
        with respx.mock(base_url=REAL) as mock:
            mock.post("/api/v2/tts").respond(201, json=job())
            mock.get("/api/v2/tts/job-1").respond(200, json=job())
            with pytest.raises(JobDeadlineExceeded) as caught:
                await provider.send_data(CREDS, {"text": "Hi", "voice_id": VOICE})
    assert caught.value.details["job_id"] == "job-1"


@pytest.mark.parametrize(
    ("body", "status", "url"),
    [
        (job(), JobStatus.RUNNING, None),
        (job({"duration": None, "size": None, "url": None}), JobStatus.RUNNING, None),
        (job(DONE), JobStatus.SUCCEEDED, CDN),
        (job(status="failed"), JobStatus.FAILED, None),
        (job(error="boom"), JobStatus.FAILED, None),
    ],
)
def test_job_mapping(real: PlayHTProvider, body: dict, status: JobStatus, url: str | None) -> None:
    mapped = real.job_from(body)
    assert mapped.status is status
    assert mapped.result_url == url
    assert mapped.provider == "playht"


async def test_job_function(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/api/v2/tts/job-1").respond(200, json=job(DONE))
        state = await real.call("job", CREDS, {"job_id": "job-1"})
    assert route.calls.last.request.headers["X-USER-ID"] == USER
    assert state["status"] == "succeeded"
    assert state["result_url"] == CDN
    assert "raw" not in state


@pytest.mark.parametrize(
    "data",
    [
        {"text": "hi", "voice_id": VOICE, "model": "PlayHT1.0"},
        {"text": "hi", "voice_id": VOICE, "format": "mulaw"},
        {"text": "", "voice_id": VOICE},
    ],
)
async def test_invalid_speech_requests_send_nothing(real: PlayHTProvider, data: dict) -> None:
    with respx.mock(base_url=REAL) as mock, pytest.raises(InvalidInput):
        await real.send_data(CREDS, data)
    assert not mock.calls


async def test_voices_with_filters_and_cloned(real: PlayHTProvider) -> None:
    stock = [
        {"id": "s3://a/manifest.json", "name": "Jennifer", "sample": "https://s/a.mp3",
         "accent": "american", "age": "adult", "gender": "female", "language": "English (US)",
         "language_code": "en-US", "style": "narrative", "tempo": "neutral",
         "texture": "smooth", "voice_engine": "PlayHT2.0"},
        {"id": "s3://b/manifest.json", "name": "Matteo", "gender": "male",
         "language": "Italian", "language_code": "it-IT", "voice_engine": "Play3.0-mini"},
    ]  # fmt: skip
    cloned = [{"id": "s3://c/manifest.json", "name": "CEO", "type": "instant"}]
    with respx.mock(base_url=REAL) as mock:
        voices_route = mock.get("/api/v2/voices").respond(200, json=stock)
        cloned_route = mock.get("/api/v2/cloned-voices").respond(200, json=cloned)
        everything = await real.call("voices", CREDS, {})
        italian = await real.call("voices", CREDS, {"language": "it-IT"})
        female = await real.call("voices", CREDS, {"gender": "Female"})
        engine = await real.call("voices", CREDS, {"voice_engine": "play3.0-mini"})
        with_cloned = await real.call("voices", CREDS, {"include_cloned": True, "gender": "male"})
    assert voices_route.calls.last.request.headers["AUTHORIZATION"] == KEY
    assert cloned_route.call_count == 1
    assert [v["name"] for v in everything] == ["Jennifer", "Matteo"]
    assert [v["name"] for v in italian] == ["Matteo"]
    assert [v["name"] for v in female] == ["Jennifer"]
    assert [v["name"] for v in engine] == ["Matteo"]
    assert [(v["name"], v["category"]) for v in with_cloned] == [
        ("Matteo", "stock"),
        ("CEO", "cloned"),
    ]
    assert everything[0]["preview_url"] == "https://s/a.mp3"
    assert everything[0]["language"] == "en-US"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (400, '{"error_message": "voice is invalid", "error_id": "INVALID"}', BadRequest),
        (401, '{"error_message": "Unauthorized", "error_id": "UNAUTHORIZED"}', InvalidCredentials),
        (403, "Forbidden", InvalidCredentials),
        (402, '{"error_message": "No credits"}', QuotaExhausted),
        (429, '{"error_message": "Too many requests"}', RateLimited),
        (500, "Internal Server Error", Transient),
        (503, "<html>gone</html>", Transient),
    ],
)
async def test_errors_are_mapped(
    real: PlayHTProvider, status: int, content: str, expected: type[ProviderError]
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post("/api/v2/tts").respond(status, content=content)
        with pytest.raises(ProviderError) as caught:
            await real.send_data(CREDS, {"text": "hi", "voice_id": VOICE})
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.message
    assert_secret_free(caught.value)


async def test_a_vendor_echoing_the_key_is_redacted(real: PlayHTProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/api/v2/cloned-voices").respond(
            401, json={"error_message": f"AUTHORIZATION {KEY} rejected for {USER}"}
        )
        with pytest.raises(InvalidCredentials) as caught:
            await real.check_connection(CREDS)
    assert_secret_free(caught.value)


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("rate_limit", 429, RateLimited), ("error", 503, Transient), ("error", 500, Transient)],
)
async def test_emulator_fault_bodies_map_to_the_taxonomy(
    real: PlayHTProvider, kind: str, status: int, expected: type[ProviderError]
) -> None:
    emulated = emulator.error_response(kind, status, 1.0)
    response = httpx.Response(
        emulated.status_code, content=emulated.body, headers=dict(emulated.headers)
    )
    error = real.error_from_response(response)
    assert type(error) is expected
    assert error.code


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandboxed(
    provider_factory: Callable[[str], ThirdPartyProvider], sandbox_state: SandboxState
) -> PlayHTProvider:
    sandbox_state.faults_for("playht").job_seconds = 0.05
    provider = provider_factory("playht")
    assert isinstance(provider, PlayHTProvider)
    return provider


async def test_sandbox_connect(sandboxed: PlayHTProvider) -> None:
    account = await sandboxed.check_connection(CREDS)
    assert (account.id, account.name) == (USER, "Legacy")
    bearer = await sandboxed.check_connection({"user_id": USER, "api_key": f"Bearer {KEY}"})
    assert bearer.id == USER
    with pytest.raises(InvalidCredentials) as caught:
        await sandboxed.check_connection({"user_id": USER, "api_key": "invalid-secret-1"})
    assert "invalid-secret-1" not in str(caught.value)


async def test_sandbox_voices(sandboxed: PlayHTProvider) -> None:
    voices = await sandboxed.call("voices", CREDS, {"include_cloned": True})
    assert [v["id"] for v in voices] == [v["id"] for v in emulator.VOICES + emulator.CLONED_VOICES]
    german = await sandboxed.call("voices", CREDS, {"language": "German"})
    assert [v["name"] for v in german] == ["Hanna"]


async def test_sandbox_synthesis_stores_the_audio(
    sandboxed: PlayHTProvider, sandbox_state: SandboxState, settings: Settings
) -> None:
    voice = emulator.VOICES[0]["id"]
    text = "Read this before the lights go out."
    result = await sandboxed.send_data(CREDS, {"text": text, "voice_id": voice})
    expected = emulator.fake_audio(text, voice)
    assert result.media.path.is_file()
    assert result.media.path.read_bytes() == expected
    assert result.media.path.parent == settings.home / "media"
    assert result.duration_seconds is not None
    assert sandbox_state.paid_calls["playht"] == 1
    polls = sum(n for call, n in sandbox_state.calls.items() if "GET /playht/api/v2/tts/" in call)
    assert polls >= 1


async def test_sandbox_failed_job(sandboxed: PlayHTProvider) -> None:
    voice = emulator.VOICES[1]["id"]
    with pytest.raises(JobFailed, match="on purpose"):
        await sandboxed.send_data(CREDS, {"text": "[fail] please", "voice_id": voice})


async def test_sandbox_unknown_voice_is_a_bad_request(
    sandboxed: PlayHTProvider, sandbox_state: SandboxState
) -> None:
    with pytest.raises(BadRequest, match="voice"):
        await sandboxed.send_data(CREDS, {"text": "hi", "voice_id": "s3://nope/manifest.json"})
    assert sandbox_state.paid_calls["playht"] == 0


async def test_provider_neutral_request_is_understood(real: PlayHTProvider) -> None:
    """A request written for any voice provider (upper-case format, a language) works here."""
    neutral = SpeechRequest(text="Hi", voice_id=VOICE, format="MP3", language="en-US")
    with respx.mock(base_url=REAL) as mock:
        create = mock.post("/api/v2/tts").respond(201, json=job(DONE))
        mock.get(CDN).respond(200, content=AUDIO)
        result = await real.send_data(CREDS, neutral)
    body = json.loads(create.calls.last.request.content)
    assert body == {
        "text": "Hi",
        "voice": VOICE,
        "voice_engine": "PlayHT2.0",
        "output_format": "mp3",
    }
    assert result.media.content_type == "audio/mpeg"
