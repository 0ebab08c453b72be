"""D-ID: request shapes against the reference, error mapping, paging, and renders in the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    InvalidInput,
    JobDeadlineExceeded,
    JobFailed,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.jobs import JobStatus
from arkyra.providers.video.d_id import DIdProvider
from arkyra.sandbox.state import SandboxState

REAL = "https://api.d-id.com"
KEY = "dXNlckBleGFtcGxlLmNvbQ:Zk9xSecretPart77"
CREDS = {"api_key": KEY}
TALK = {
    "source_url": "https://example.com/face.jpg",
    "script": {
        "type": "text",
        "input": "Hello from the sandbox",
        "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural"},
    },
    "user_data": "item-42",
}
CLIP = {
    "presenter_id": "v2_public_presenter_01",
    "script": {"type": "audio", "audio_url": "https://example.com/voice.mp3"},
}


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[DIdProvider]:
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("d-id", settings=real_settings, client=client)
        assert isinstance(provider, DIdProvider)
        yield provider


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_reads_owner_from_credits(real: DIdProvider) -> None:
    body = {
        "credits": [{"owner_id": "google-oauth2|123", "remaining": 5, "total": 20}],
        "remaining": 5,
        "total": 20,
    }
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/credits").respond(200, json=body)
        account = await real.check_connection(CREDS)
    assert route.calls.last.request.headers["Authorization"] == f"Basic {KEY}"
    assert account.id == "google-oauth2|123"
    assert account.name == "D-ID"


async def test_check_connection_label_and_no_credit_rows(real: DIdProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/credits").respond(200, json={"credits": [], "remaining": 0, "total": 0})
        account = await real.check_connection({**CREDS, "label": "Studio"})
    assert account.id == real.fingerprint(KEY)
    assert account.name == "Studio"


async def test_send_talk_shape(real: DIdProvider) -> None:
    answer = {"id": "tlk_1", "object": "talk", "created_at": "2026", "status": "created"}
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/talks").respond(201, json=answer)
        job = await real.send_data(CREDS, TALK)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Basic {KEY}"
    assert json.loads(request.content) == TALK
    assert (job.id, job.status, job.vendor_status) == ("tlk_1", JobStatus.QUEUED, "created")


async def test_send_clip_shape(real: DIdProvider) -> None:
    answer = {"id": "clp_1", "object": "clip", "created_at": "2026", "status": "created"}
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/clips").respond(201, json=answer)
        job = await real.send_data(CREDS, CLIP)
    assert json.loads(route.calls.last.request.content) == CLIP
    assert job.id == "clp_1"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**TALK, "source_url": "http://example.com/face.jpg"}, "source_url"),
        ({**TALK, "source_url": "https://example.com/face.gif"}, "source_url"),
        ({**TALK, "script": {**TALK["script"], "input": "hi"}}, "script.text.input"),
        ({**TALK, "script": {"type": "text", "input": "hello"}}, "script.text.provider"),
        ({**TALK, "user_data": "x" * 1001}, "user_data"),
        ({**TALK, "webhook": "http://hooks.example.com"}, "webhook"),
        ({**CLIP, "script": {"type": "audio"}}, "script.audio.audio_url"),
    ],
)
async def test_bad_input_is_invalid_input_per_field(
    real: DIdProvider, data: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await real.send_data(CREDS, data)
    assert field in info.value.errors


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "error_class"),
    [
        (400, "ValidationError", BadRequest),
        (401, "AuthorizationError", InvalidCredentials),
        (402, "InsufficientCreditsError", QuotaExhausted),
        (403, "PermissionError", InvalidCredentials),
        (404, "NotFoundError", BadRequest),
        (451, "ContentModerationError", ContentRejected),
        (429, "TooManyRequestsError", RateLimited),
        (500, "InternalServerError", Transient),
    ],
)
async def test_errors_are_mapped(
    real: DIdProvider, status: int, kind: str, error_class: type[ProviderError]
) -> None:
    body = {"kind": kind, "description": "explained by d-id", "details": {"x": 1}}
    with respx.mock(base_url=REAL) as mock:
        mock.post("/talks").respond(status, json=body)
        with pytest.raises(error_class) as info:
            await real.send_data(CREDS, TALK)
    assert info.value.status == status
    assert info.value.code == kind
    assert info.value.message == "explained by d-id"
    assert_secret_free(info.value)


async def test_missing_key_fails_before_any_request(real: DIdProvider) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        route = mock.get("/credits")
        with pytest.raises(InvalidCredentials):
            await real.check_connection({})
    assert not route.called


async def test_an_echoed_key_is_redacted(real: DIdProvider) -> None:
    body = {"kind": "AuthorizationError", "description": f"bad key {KEY}"}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/credits").respond(401, json=body)
        with pytest.raises(InvalidCredentials) as info:
            await real.check_connection(CREDS)
    assert info.value.message == "bad key [redacted]"
    assert_secret_free(info.value)


async def test_insufficient_credits_kind_wins_over_status(real: DIdProvider) -> None:
    body = {"kind": "InsufficientCreditsError", "description": "no credits"}
    with respx.mock(base_url=REAL) as mock:
        mock.post("/clips").respond(400, json=body)
        with pytest.raises(QuotaExhausted):
            await real.send_data(CREDS, CLIP)


# -- job mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("created", JobStatus.QUEUED),
        ("started", JobStatus.RUNNING),
        ("done", JobStatus.SUCCEEDED),
        ("error", JobStatus.FAILED),
        ("rejected", JobStatus.FAILED),
    ],
)
async def test_get_job_maps_status(real: DIdProvider, vendor: str, expected: JobStatus) -> None:
    body: dict = {"id": "tlk_9", "status": vendor}
    if vendor == "done":
        body["result_url"] = "https://d-id-talks.s3.amazonaws.com/tlk_9.mp4?sig=1"
        body["duration"] = 4.2
    if vendor == "error":
        body["error"] = {"kind": "FaceError", "description": "no face found"}
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/talks/tlk_9").respond(200, json=body)
        job = await real.get_job(CREDS, "tlk_9")
    assert route.calls.last.request.headers["Authorization"] == f"Basic {KEY}"
    assert job.status is expected
    assert job.vendor_status == vendor
    if vendor == "done":
        assert job.result_url == body["result_url"]
        assert job.duration_seconds == 4.2
    if vendor == "error":
        assert (job.failure_code, job.failure_reason) == ("FaceError", "no face found")
    if vendor == "rejected":
        assert job.failure_code == "rejected"


async def test_clip_ids_are_fetched_from_clips(real: DIdProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/clips/clp_7").respond(200, json={"id": "clp_7", "status": "started"})
        job = await real.get_job(CREDS, "clp_7")
    assert route.called
    assert job.status is JobStatus.RUNNING


# -- lists -----------------------------------------------------------------------------------


async def test_presenters_follow_the_token(real: DIdProvider) -> None:
    pages = {
        None: {"presenters": [{"presenter_id": "p1"}, {"presenter_id": "p2"}], "token": "t2"},
        "t2": {"presenters": [{"presenter_id": "p3"}], "token": "t3"},
        "t3": {"presenters": [{"presenter_id": "p4"}]},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("token")])

    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/clips/presenters").mock(side_effect=answer)
        presenters = await real.call("presenters", CREDS, {"page_size": 2})
    assert [p.id for p in presenters] == ["p1", "p2", "p3", "p4"]
    assert route.call_count == 3
    assert all(c.request.url.params["limit"] == "2" for c in route.calls)


async def test_voices_filter_by_provider_language_gender(real: DIdProvider) -> None:
    voices = [
        {"id": "a", "gender": "female", "provider": "microsoft",
         "languages": [{"language": "English", "locale": "en-US"}]},
        {"id": "b", "gender": "male", "provider": "microsoft",
         "languages": [{"language": "English", "locale": "en-GB"}]},
        {"id": "c", "gender": "female", "provider": "microsoft",
         "languages": [{"language": "German", "locale": "de-DE"}]},
    ]  # fmt: skip
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/tts/voices").respond(200, json=voices)
        english = await real.call("voices", CREDS, {"language": "en"})
        british = await real.call("voices", CREDS, {"language": "en-GB"})
        german_women = await real.call("voices", CREDS, {"language": "German", "gender": "female"})
    assert route.calls.last.request.url.params["provider"] == "microsoft"
    assert [v.id for v in english] == ["a", "b"]
    assert [v.id for v in british] == ["b"]
    assert [v.id for v in german_women] == ["c"]
    assert german_women[0].locales == ["de-DE"]
    with pytest.raises(InvalidInput):
        await real.call("voices", CREDS, {"provider": "acme"})


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandbox(
    provider_factory: Callable[[str], ThirdPartyProvider], sandbox_state: SandboxState
) -> DIdProvider:
    sandbox_state.faults_for("d-id").job_seconds = 0.05
    provider = provider_factory("d-id")
    assert isinstance(provider, DIdProvider)
    return provider


async def test_sandbox_talk_and_clip_lifecycle(
    sandbox: DIdProvider, sandbox_state: SandboxState
) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id.startswith("auth0|")
    assert KEY not in account.id
    for data in (TALK, CLIP):
        job = await sandbox.send_data(CREDS, data)
        assert job.status is JobStatus.QUEUED
        done = await sandbox.wait_for_job(CREDS, job.id)
        assert done.status is JobStatus.SUCCEEDED
        assert done.result_url
        assert done.result_url.startswith("http://sandbox.test/d-id/")
    assert sandbox_state.paid_calls["d-id"] == 2


async def test_sandbox_failed_talk_raises_job_failed(sandbox: DIdProvider) -> None:
    data = {**TALK, "script": {**TALK["script"], "input": "please [fail] now"}}
    job = await sandbox.send_data(CREDS, data)
    with pytest.raises(JobFailed) as info:
        await sandbox.wait_for_job(CREDS, job.id)
    assert info.value.code == "FaceError"
    assert info.value.details["job_id"] == job.id
    assert_secret_free(info.value)


async def test_sandbox_deadline(sandbox: DIdProvider, sandbox_state: SandboxState) -> None:
    sandbox_state.faults_for("d-id").job_seconds = 30
    job = await sandbox.send_data(CREDS, CLIP)
    with pytest.raises(JobDeadlineExceeded) as info:
        await sandbox.wait_for_job(CREDS, job.id, deadline_seconds=0.1)
    assert info.value.details["job_id"] == job.id


async def test_sandbox_rejection_quota_and_bad_key(
    sandbox: DIdProvider, sandbox_state: SandboxState
) -> None:
    data = {**TALK, "script": {**TALK["script"], "input": "something [reject]"}}
    with pytest.raises(ContentRejected) as rejected:
        await sandbox.send_data(CREDS, data)
    assert rejected.value.status == 451
    sandbox_state.store("d-id").setdefault("credits", {})[KEY] = 0
    with pytest.raises(QuotaExhausted) as quota:
        await sandbox.send_data(CREDS, TALK)
    assert quota.value.status == 402
    assert sandbox_state.paid_calls["d-id"] == 0
    with pytest.raises(InvalidCredentials) as bad:
        await sandbox.check_connection({"api_key": "invalid:key"})
    for exc in (rejected.value, quota.value, bad.value):
        assert_secret_free(exc)
    with pytest.raises(BadRequest) as unknown:
        await sandbox.send_data(CREDS, {**CLIP, "presenter_id": "nobody"})
    assert unknown.value.status == 404


async def test_sandbox_lists(sandbox: DIdProvider) -> None:
    presenters = await sandbox.call("presenters", CREDS, {"page_size": 2})
    assert len(presenters) == 5
    assert len({p.id for p in presenters}) == 5
    assert presenters[0].name == "Presenter 1"
    voices = await sandbox.call("voices", CREDS, {"language": "en", "gender": "male"})
    assert [v.id for v in voices] == ["en-GB-RyanNeural"]
    eleven = await sandbox.call("voices", CREDS, {"provider": "elevenlabs", "language": "de"})
    assert [(v.name, v.provider) for v in eleven] == [("Rachel", "elevenlabs")]


async def test_sandbox_injected_errors(sandbox: DIdProvider, sandbox_state: SandboxState) -> None:
    faults = sandbox_state.faults_for("d-id")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 30
    with pytest.raises(RateLimited) as limited:
        await sandbox.get_job(CREDS, "tlk_x")
    assert limited.value.retry_after == 30
    assert limited.value.code == "TooManyRequestsError"
    faults.rate_limit_rate = 0.0
    faults.error_rate = 1.0
    with pytest.raises(Transient) as broken:
        await sandbox.send_data(CREDS, TALK)
    assert broken.value.code == "InternalServerError"
    assert sandbox_state.paid_calls["d-id"] == 0
