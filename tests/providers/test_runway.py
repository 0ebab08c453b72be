"""Runway: request shapes against the reference, error mapping, paging, and tasks in the sandbox."""

from __future__ import annotations

import asyncio
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
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.jobs import JobStatus
from arkyra.providers.video.runway import RunwayProvider
from arkyra.sandbox.state import SandboxState

REAL = "https://api.dev.runwayml.com"
KEY = "key_runway_test_7c1d9e0f3a2b"
CREDS = {"api_key": KEY}
TURBO = {
    "model": "gen4_turbo",
    "promptImage": "https://example.com/first-frame.png",
    "ratio": "1280:720",
    "promptText": "A slow pan over a city at dawn",
    "duration": 5,
}
GEN45 = {
    "model": "gen4.5",
    "promptImage": [{"uri": "https://example.com/f.png", "position": "first"}],
    "ratio": "720:1280",
    "promptText": "Waves",
    "duration": 8,
    "seed": 7,
    "contentModeration": {"publicFigureThreshold": "low"},
}


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


def assert_runway_headers(request: httpx.Request) -> None:
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["X-Runway-Version"] == "2024-11-06"


def make_real(settings: Settings, client: httpx.AsyncClient, attempts: int) -> RunwayProvider:
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": attempts})
    provider = get_provider("runway", settings=real_settings, client=client)
    assert isinstance(provider, RunwayProvider)
    return provider


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def real(settings: Settings, client: httpx.AsyncClient) -> RunwayProvider:
    return make_real(settings, client, attempts=1)


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_reads_organization(real: RunwayProvider) -> None:
    body = {"creditBalance": 100, "tier": {"maxMonthlyCreditSpend": 1, "models": {}}}
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/organization").respond(200, json=body)
        account = await real.check_connection({**CREDS, "label": "Ads team"})
    assert_runway_headers(route.calls.last.request)
    assert account.id == real.fingerprint(KEY)
    assert KEY not in account.id
    assert account.name == "Ads team"
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/organization").respond(200, json=body)
        assert (await real.check_connection(CREDS)).name == "Runway"


@pytest.mark.parametrize("data", [TURBO, GEN45], ids=["gen4_turbo", "gen4.5"])
async def test_send_data_posts_image_to_video(real: RunwayProvider, data: dict) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/image_to_video").respond(200, json={"id": "task-1"})
        job = await real.send_data(CREDS, data)
    request = route.calls.last.request
    assert_runway_headers(request)
    assert json.loads(request.content) == data
    assert (job.id, job.status) == ("task-1", JobStatus.QUEUED)


async def test_send_data_accepts_snake_case(real: RunwayProvider) -> None:
    data = {"model": "gen4_turbo", "prompt_image": "runway://upload/1", "ratio": "960:960"}
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/image_to_video").respond(200, json={"id": "task-2"})
        await real.send_data(CREDS, data)
    assert json.loads(route.calls.last.request.content) == {
        "model": "gen4_turbo",
        "promptImage": "runway://upload/1",
        "ratio": "960:960",
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**TURBO, "model": "gen3a_turbo"}, "model"),
        ({**TURBO, "ratio": "1920:1080"}, "ratio"),
        ({**TURBO, "promptImage": "http://example.com/x.png"}, "promptImage"),
        ({**TURBO, "promptText": "x" * 1001}, "promptText"),
        ({k: v for k, v in TURBO.items() if k != "ratio"}, "ratio"),
        ({k: v for k, v in GEN45.items() if k != "promptText"}, "promptText"),
        ({**GEN45, "duration": 11}, "duration"),
        ({k: v for k, v in GEN45.items() if k != "duration"}, "duration"),
        ({**GEN45, "promptImage": []}, "promptImage"),
        ({**GEN45, "promptImage": [{"uri": "ftp://x/y.png"}]}, "promptImage"),
        ({**TURBO, "seed": -1}, "seed"),
    ],
)
async def test_bad_input_is_invalid_input_per_field(
    real: RunwayProvider, data: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await real.send_data(CREDS, data)
    assert field in info.value.errors


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequest),
        (401, InvalidCredentials),
        (404, BadRequest),
        (405, BadRequest),
        (429, RateLimited),
        (500, Transient),
        (502, Transient),
        (503, Transient),
        (504, Transient),
    ],
)
async def test_errors_are_mapped(
    real: RunwayProvider, status: int, error_class: type[ProviderError]
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/tasks/t-1").respond(status, json={"error": "Runway says no"})
        with pytest.raises(error_class) as info:
            await real.get_job(CREDS, "t-1")
    assert info.value.status == status
    assert info.value.message == "Runway says no"
    assert_secret_free(info.value)


async def test_missing_key_fails_before_any_request(real: RunwayProvider) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        route = mock.get("/v1/organization")
        with pytest.raises(InvalidCredentials):
            await real.check_connection({"api_key": ""})
    assert not route.called


async def test_an_echoed_key_is_redacted(real: RunwayProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/organization").respond(401, json={"error": f"Bad key {KEY}"})
        with pytest.raises(InvalidCredentials) as info:
            await real.check_connection(CREDS)
    assert info.value.message == "Bad key [redacted]"
    assert_secret_free(info.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after-ms": "1500"}, 1.5), ({"Retry-After": "12"}, 12.0)],
)
async def test_429_reads_retry_after_headers(
    real: RunwayProvider, headers: dict, expected: float
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/tasks/t-1").respond(429, json={"error": "slow down"}, headers=headers)
        with pytest.raises(RateLimited) as info:
            await real.get_job(CREDS, "t-1")
    assert info.value.retry_after == expected


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_documented_retryable_statuses_retry_even_a_post(
    settings: Settings, client: httpx.AsyncClient, status: int
) -> None:
    provider = make_real(settings, client, attempts=2)
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/image_to_video")
        route.side_effect = [
            httpx.Response(status, json={"error": "busy"}, headers={"retry-after-ms": "1"}),
            httpx.Response(200, json={"id": "task-3"}),
        ]
        job = await provider.send_data(CREDS, TURBO)
    assert route.call_count == 2
    assert job.id == "task-3"


async def test_plain_500_on_a_post_is_not_repeated(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    provider = make_real(settings, client, attempts=3)
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/image_to_video").respond(500, json={"error": "oops"})
        with pytest.raises(Transient):
            await provider.send_data(CREDS, TURBO)
    assert route.call_count == 1


# -- job mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("PENDING", JobStatus.QUEUED),
        ("THROTTLED", JobStatus.QUEUED),
        ("RUNNING", JobStatus.RUNNING),
        ("SUCCEEDED", JobStatus.SUCCEEDED),
        ("FAILED", JobStatus.FAILED),
        ("CANCELLED", JobStatus.CANCELLED),
    ],
)
async def test_get_job_maps_status(real: RunwayProvider, vendor: str, expected: JobStatus) -> None:
    body: dict = {"id": "t-5", "status": vendor, "createdAt": "2026-01-01T00:00:00Z"}
    if vendor == "RUNNING":
        body["progress"] = 0.4
    if vendor == "SUCCEEDED":
        body["output"] = ["https://dnznrvs05pmza.cloudfront.net/t-5.mp4?_jwt=x", "second"]
    if vendor == "FAILED":
        body["failure"] = "Content moderation"
        body["failureCode"] = "SAFETY.INPUT.IMAGE"
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/tasks/t-5").respond(200, json=body)
        job = await real.get_job(CREDS, "t-5")
    assert_runway_headers(route.calls.last.request)
    assert job.status is expected
    assert job.vendor_status == vendor
    if vendor == "RUNNING":
        assert job.progress == 0.4
    if vendor == "SUCCEEDED":
        assert job.result_url == body["output"][0]
        assert job.result_expires_at is not None
    if vendor == "FAILED":
        assert (job.failure_reason, job.failure_code) == (
            "Content moderation",
            "SAFETY.INPUT.IMAGE",
        )


# -- pagination ------------------------------------------------------------------------------


async def test_voices_follow_next_cursor(real: RunwayProvider) -> None:
    pages = {
        None: {"data": [{"id": "v1", "status": "READY"}, {"id": "v2", "status": "FAILED"}],
               "nextCursor": "c2"},
        "c2": {"data": [{"id": "v3", "status": "READY"}], "nextCursor": None},
    }  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/voices").mock(side_effect=answer)
        everything = await real.call("voices", CREDS, {"page_size": 2})
        ready = await real.call("voices", CREDS, {"page_size": 2, "status": "READY"})
    assert [v.id for v in everything] == ["v1", "v2", "v3"]
    assert [v.id for v in ready] == ["v1", "v3"]
    assert route.call_count == 4
    for call in route.calls:
        assert call.request.url.params["limit"] == "2"
        assert_runway_headers(call.request)


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandbox(
    provider_factory: Callable[[str], ThirdPartyProvider], sandbox_state: SandboxState
) -> RunwayProvider:
    sandbox_state.faults_for("runway").job_seconds = 0.2
    provider = provider_factory("runway")
    assert isinstance(provider, RunwayProvider)
    return provider


async def test_sandbox_task_lifecycle(sandbox: RunwayProvider, sandbox_state: SandboxState) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id == sandbox.fingerprint(KEY)
    job = await sandbox.send_data(CREDS, GEN45)
    updates: list[tuple[str, float | None]] = []
    done = await sandbox.wait_for_job(
        CREDS, job.id, on_update=lambda j: updates.append((j.vendor_status, j.progress))
    )
    assert done.status is JobStatus.SUCCEEDED
    assert done.result_url
    assert done.result_url.startswith("http://sandbox.test/runway/outputs/")
    seen = [status for status, _ in updates]
    assert "RUNNING" in seen
    assert seen[-1] == "SUCCEEDED"
    running = [p for status, p in updates if status == "RUNNING"]
    assert all(p is not None and 0 <= p < 1 for p in running)
    assert sandbox_state.paid_calls["runway"] == 1


async def test_sandbox_throttled_is_queued(
    sandbox: RunwayProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("runway").job_seconds = 2  # PENDING 0.1 s, then THROTTLED 0.1 s
    job = await sandbox.send_data(CREDS, TURBO)
    states = set()
    for _ in range(40):
        current = await sandbox.get_job(CREDS, job.id)
        states.add((current.vendor_status, current.status))
        if current.vendor_status == "THROTTLED":
            break
        await asyncio.sleep(0.01)
    assert ("THROTTLED", JobStatus.QUEUED) in states


async def test_sandbox_failed_task_raises_job_failed(sandbox: RunwayProvider) -> None:
    job = await sandbox.send_data(CREDS, {**TURBO, "promptText": "explode [fail]"})
    with pytest.raises(JobFailed) as info:
        await sandbox.wait_for_job(CREDS, job.id)
    assert info.value.code == "INTERNAL.BAD_OUTPUT.CODE01"
    assert info.value.details["vendor_status"] == "FAILED"
    assert_secret_free(info.value)


async def test_sandbox_deadline(sandbox: RunwayProvider, sandbox_state: SandboxState) -> None:
    sandbox_state.faults_for("runway").job_seconds = 30
    job = await sandbox.send_data(CREDS, TURBO)
    with pytest.raises(JobDeadlineExceeded) as info:
        await sandbox.wait_for_job(CREDS, job.id, deadline_seconds=0.1)
    assert info.value.details["job_id"] == job.id
    assert_secret_free(info.value)


async def test_sandbox_requires_version_header_and_good_key(sandbox: RunwayProvider) -> None:
    url = f"{sandbox.base_url}/v1/organization"
    missing = await sandbox.client.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 400
    assert "X-Runway-Version" in missing.json()["error"]
    with pytest.raises(InvalidCredentials) as info:
        await sandbox.check_connection({"api_key": "invalid-key"})
    assert info.value.status == 401


async def test_sandbox_validates_body_and_voices_page(sandbox: RunwayProvider) -> None:
    response = await sandbox.client.post(
        f"{sandbox.base_url}/v1/image_to_video",
        json={**TURBO, "ratio": "1:1"},
        headers=sandbox.auth_headers(CREDS),
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    voices = await sandbox.call("voices", CREDS, {"page_size": 2})
    assert len(voices) == 5
    assert len({v.id for v in voices}) == 5
    failed = [v for v in voices if v.status == "FAILED"]
    assert [v.failure_reason for v in failed] == ["sample too short"]


async def test_sandbox_injected_rate_limit_is_waited_out(
    sandbox: RunwayProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("runway")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 30
    with pytest.raises(RateLimited) as info:
        await sandbox.check_connection(CREDS)
    assert info.value.retry_after == 30
    assert info.value.message == "Too many requests"


async def test_sandbox_injected_503_on_create_is_retried_then_raised(
    sandbox: RunwayProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("runway")
    faults.error_rate = 1.0
    faults.error_status = 503
    with pytest.raises(Transient) as info:
        await sandbox.send_data(CREDS, TURBO)
    assert info.value.status == 503
    attempts = sum(n for key, n in sandbox_state.calls.items() if "image_to_video" in key)
    assert attempts == sandbox.settings.http_max_attempts
    assert sandbox_state.paid_calls["runway"] == 0
