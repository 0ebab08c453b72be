"""Synthesia: request shapes, error mapping, paging, and renders in the sandbox."""

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
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.jobs import JobStatus
from arkyra.providers.video.synthesia import SynthesiaProvider
from arkyra.sandbox.state import SandboxState

REAL = "https://api.synthesia.io"
KEY = "syn-test-key-5f1c2e9a7b"
CREDS = {"api_key": KEY, "label": "Marketing"}
VIDEO = {
    "input": [
        {
            "scriptText": "Hello from the sandbox",
            "avatar": "anna_costume1_cameraA",
            "background": "green_screen",
        }
    ],
    "title": "Launch",
    "visibility": "private",
    "aspectRatio": "9:16",
    "callbackId": "item-42",
    "test": True,
}


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[SynthesiaProvider]:
    """The provider pointed at the real vendor URL (respx intercepts), one attempt per call."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("synthesia", settings=real_settings, client=client)
        assert isinstance(provider, SynthesiaProvider)
        yield provider


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_lists_one_video_with_raw_key(real: SynthesiaProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v2/videos").respond(200, json={"videos": [], "nextOffset": None})
        account = await real.check_connection(CREDS)
    request = route.calls.last.request
    assert request.url.params["limit"] == "1"
    assert request.headers["Authorization"] == KEY
    assert account.id.startswith("fp_")
    assert KEY not in account.id
    assert account.id == real.fingerprint(KEY)
    assert account.name == "Marketing"


async def test_check_connection_without_label_uses_title(real: SynthesiaProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v2/videos").respond(200, json={"videos": [], "nextOffset": None})
        account = await real.check_connection({"api_key": KEY})
    assert account.name == "Synthesia"


async def test_send_data_posts_video_in_camel_case(real: SynthesiaProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v2/videos").respond(201, json={"id": "v-1", "status": "in_progress"})
        job = await real.send_data(CREDS, VIDEO)
    request = route.calls.last.request
    assert request.headers["Authorization"] == KEY
    assert json.loads(request.content) == VIDEO
    assert (job.id, job.status, job.vendor_status) == ("v-1", JobStatus.RUNNING, "in_progress")


async def test_send_data_accepts_snake_case_and_template(real: SynthesiaProvider) -> None:
    data = {"template_id": "tpl-1", "template_data": {"name": "Ada"}, "title": "T"}
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v2/videos/fromTemplate").respond(
            201, json={"id": "v-2", "status": "in_progress"}
        )
        job = await real.send_data(CREDS, data)
    body = json.loads(route.calls.last.request.content)
    assert body == {"templateId": "tpl-1", "templateData": {"name": "Ada"}, "title": "T"}
    assert job.id == "v-2"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"input": []}, "input"),
        ({"input": [{"scriptText": "hi", "background": "b"}]}, "input.0.avatar"),
        ({"input": [{"avatar": "a", "background": "b"}]}, "input.0"),
        ({**VIDEO, "aspectRatio": "21:9"}, "aspectRatio"),
        ({**VIDEO, "visibility": "friends"}, "visibility"),
        ({**VIDEO, "unknown": 1}, "unknown"),
    ],
)
async def test_bad_input_is_invalid_input_per_field(
    real: SynthesiaProvider, data: dict, field: str
) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        route = mock.post("/v2/videos")
        with pytest.raises(InvalidInput) as info:
            await real.send_data(CREDS, data)
    assert field in info.value.errors
    assert not route.called


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequest),
        (401, InvalidCredentials),
        (403, InvalidCredentials),
        (404, BadRequest),
        (500, Transient),
        (503, Transient),
    ],
)
async def test_errors_are_mapped(
    real: SynthesiaProvider, status: int, error_class: type[ProviderError]
) -> None:
    body = {"error": "Something wrong", "context": "avatar is unknown"}
    with respx.mock(base_url=REAL) as mock:
        mock.post("/v2/videos").respond(status, json=body)
        with pytest.raises(error_class) as info:
            await real.send_data(CREDS, VIDEO)
    assert info.value.status == status
    assert "Something wrong: avatar is unknown" in info.value.message
    assert_secret_free(info.value)


async def test_missing_key_fails_before_any_request(real: SynthesiaProvider) -> None:
    with respx.mock(base_url=REAL, assert_all_called=False) as mock:
        route = mock.get("/v2/videos")
        with pytest.raises(InvalidCredentials):
            await real.check_connection({"api_key": "  "})
    assert not route.called


async def test_an_echoed_key_is_redacted(real: SynthesiaProvider) -> None:
    body = {"error": "Forbidden", "context": f"key {KEY} is not valid"}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v2/videos").respond(403, json=body)
        with pytest.raises(InvalidCredentials) as info:
            await real.check_connection(CREDS)
    assert "[redacted]" in info.value.message
    assert_secret_free(info.value)


async def test_429_uses_ratelimit_reset_as_retry_after(real: SynthesiaProvider) -> None:
    headers = {"RateLimit-Limit": "60", "RateLimit-Reset": "42"}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v2/videos/v-9").respond(429, json={"error": "Too Many"}, headers=headers)
        with pytest.raises(RateLimited) as info:
            await real.get_job(CREDS, "v-9")
    assert info.value.retry_after == 42
    assert_secret_free(info.value)


async def test_429_with_short_reset_is_retried(settings: Settings) -> None:
    retrying = settings.model_copy(update={"sandbox": False, "http_max_attempts": 2})
    async with httpx.AsyncClient() as client:
        provider = get_provider("synthesia", settings=retrying, client=client)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/v2/videos/v-1")
            route.side_effect = [
                httpx.Response(429, json={"error": "Slow"}, headers={"RateLimit-Reset": "0"}),
                httpx.Response(200, json={"id": "v-1", "status": "complete", "download": "u"}),
            ]
            job = await provider.get_job(CREDS, "v-1")
    assert route.call_count == 2
    assert job.status is JobStatus.SUCCEEDED


# -- job mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("in_progress", JobStatus.RUNNING),
        ("complete", JobStatus.SUCCEEDED),
        ("error", JobStatus.FAILED),
        ("rejected", JobStatus.FAILED),
        ("deleted", JobStatus.CANCELLED),
    ],
)
async def test_get_job_maps_status(
    real: SynthesiaProvider, vendor: str, expected: JobStatus
) -> None:
    body = {
        "id": "v-3",
        "status": vendor,
        "download": "https://cdn.synthesia.io/v-3.mp4" if vendor == "complete" else None,
        "duration": "0:01:02.5",
        "thumbnail": {"image": "https://cdn/v-3.jpg", "gif": "https://cdn/v-3.gif"},
    }
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v2/videos/v-3").respond(200, json=body)
        job = await real.get_job(CREDS, "v-3")
    assert route.calls.last.request.headers["Authorization"] == KEY
    assert job.status is expected
    assert job.vendor_status == vendor
    assert job.duration_seconds == pytest.approx(62.5)
    assert job.thumbnail_url == "https://cdn/v-3.jpg"
    if vendor == "complete":
        assert job.result_url == "https://cdn.synthesia.io/v-3.mp4"
    if expected is JobStatus.FAILED:
        assert job.failure_code == vendor
        assert vendor in (job.failure_reason or "")


async def test_job_id_cannot_escape_the_path(real: SynthesiaProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get(url__regex=r".*").respond(200, json={"id": "x", "status": "in_progress"})
        await real.get_job(CREDS, "../templates?x=1")
    assert route.calls.last.request.url.raw_path == b"/v2/videos/..%2Ftemplates%3Fx%3D1"


# -- pagination ------------------------------------------------------------------------------


async def test_templates_follow_next_offset_across_pages(real: SynthesiaProvider) -> None:
    pages = {
        None: {"templates": [{"id": "a", "title": "A"}, {"id": "b"}], "nextOffset": 2},
        "2": {"templates": [{"id": "c"}, {"id": "d"}], "nextOffset": 4},
        "4": {"templates": [{"id": "e"}], "nextOffset": None},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("offset")])

    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v2/templates").mock(side_effect=answer)
        templates = await real.call("templates", CREDS, {"page_size": 2, "source": "workspace"})
    assert [t.id for t in templates] == ["a", "b", "c", "d", "e"]
    assert route.call_count == 3
    for call in route.calls:
        assert call.request.url.params["limit"] == "2"
        assert call.request.url.params["source"] == "workspace"
        assert call.request.headers["Authorization"] == KEY


async def test_templates_input_is_validated(real: SynthesiaProvider) -> None:
    with pytest.raises(InvalidInput) as info:
        await real.call("templates", CREDS, {"page_size": 0})
    assert "page_size" in info.value.errors


# -- end to end against the sandbox ----------------------------------------------------------


@pytest.fixture
def sandbox(
    provider_factory: Callable[[str], ThirdPartyProvider], sandbox_state: SandboxState
) -> SynthesiaProvider:
    sandbox_state.faults_for("synthesia").job_seconds = 0.05
    provider = provider_factory("synthesia")
    assert isinstance(provider, SynthesiaProvider)
    return provider


async def test_sandbox_render_lifecycle(
    sandbox: SynthesiaProvider, sandbox_state: SandboxState
) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.name == "Marketing"
    job = await sandbox.send_data(CREDS, {**VIDEO, "test": False})
    assert job.status is JobStatus.RUNNING
    seen: list[str] = []
    done = await sandbox.wait_for_job(CREDS, job.id, on_update=lambda j: seen.append(j.status))
    assert done.status is JobStatus.SUCCEEDED
    assert done.result_url
    assert done.result_url.startswith("http://sandbox.test/synthesia/")
    assert done.duration_seconds == pytest.approx(12.48)
    assert JobStatus.SUCCEEDED in seen
    assert sandbox_state.paid_calls["synthesia"] == 1


async def test_sandbox_test_videos_are_free(
    sandbox: SynthesiaProvider, sandbox_state: SandboxState
) -> None:
    await sandbox.send_data(CREDS, VIDEO)
    assert sandbox_state.paid_calls["synthesia"] == 0


async def test_sandbox_template_render(sandbox: SynthesiaProvider) -> None:
    job = await sandbox.send_data(CREDS, {"templateId": "tpl-001", "templateData": {"n": "Ada"}})
    done = await sandbox.wait_for_job(CREDS, job.id)
    assert done.status is JobStatus.SUCCEEDED
    with pytest.raises(BadRequest) as info:
        await sandbox.send_data(CREDS, {"templateId": "tpl-nope"})
    assert info.value.status == 404


async def test_sandbox_failed_render_raises_job_failed(sandbox: SynthesiaProvider) -> None:
    data = {**VIDEO, "input": [{**VIDEO["input"][0], "scriptText": "boom [fail]"}]}
    job = await sandbox.send_data(CREDS, data)
    with pytest.raises(JobFailed) as info:
        await sandbox.wait_for_job(CREDS, job.id)
    assert info.value.details["job_id"] == job.id
    assert info.value.details["vendor_status"] == "error"
    assert_secret_free(info.value)


async def test_sandbox_rejected_render_raises_job_failed(sandbox: SynthesiaProvider) -> None:
    data = {**VIDEO, "input": [{**VIDEO["input"][0], "scriptText": "nope [reject]"}]}
    job = await sandbox.send_data(CREDS, data)
    with pytest.raises(JobFailed) as info:
        await sandbox.wait_for_job(CREDS, job.id)
    assert info.value.code == "rejected"
    assert info.value.details["vendor_status"] == "rejected"


async def test_sandbox_deadline(sandbox: SynthesiaProvider, sandbox_state: SandboxState) -> None:
    sandbox_state.faults_for("synthesia").job_seconds = 30
    job = await sandbox.send_data(CREDS, VIDEO)
    with pytest.raises(JobDeadlineExceeded) as info:
        await sandbox.wait_for_job(CREDS, job.id, deadline_seconds=0.1)
    assert info.value.details["job_id"] == job.id
    assert_secret_free(info.value)


async def test_sandbox_rejects_bad_key_and_bearer(sandbox: SynthesiaProvider) -> None:
    for key in ("invalid-key", f"Bearer {KEY}"):
        with pytest.raises(InvalidCredentials) as info:
            await sandbox.check_connection({"api_key": key})
        assert info.value.status == 403
        assert key not in str(info.value)


async def test_sandbox_templates_paged(sandbox: SynthesiaProvider) -> None:
    everything = await sandbox.call("templates", CREDS, {"page_size": 3})
    assert len(everything) == 7
    assert len({t.id for t in everything}) == 7
    assert everything[0].title == "Sandbox template 1"
    assert everything[0].variables == [{"name": "name", "type": "text"}]
    workspace = await sandbox.call("templates", CREDS, {"page_size": 2, "source": "workspace"})
    assert [t.id for t in workspace] == ["tpl-002", "tpl-004", "tpl-006"]


async def test_sandbox_injected_rate_limit(
    sandbox: SynthesiaProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("synthesia")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 30
    with pytest.raises(RateLimited) as info:
        await sandbox.get_job(CREDS, "anything")
    assert info.value.retry_after == 30
    assert info.value.message.startswith("Too Many Requests")


async def test_sandbox_validates_the_body_itself(sandbox: SynthesiaProvider) -> None:
    response = await sandbox.client.post(
        f"{sandbox.base_url}/v2/videos", json={"input": []}, headers={"Authorization": KEY}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error", "context"}
