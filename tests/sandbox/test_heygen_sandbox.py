"""HeyGen end to end: the real provider against the in-process sandbox (``provider_factory``).

Also checks the emulator's raw shapes against the contract, so that a client and an emulator
agreeing on something wrong would still be caught.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    JobDeadlineExceeded,
    JobFailed,
    ProviderError,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.jobs import JobStatus, RenderJob
from arkyra.providers.video.heygen import HeyGen
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import heygen as emulator
from tests.conftest import make_settings

IDENTIFIER = "heygen"
CREDS = {"api_key": "hg_sandbox_key_0123456789"}
NO_SCOPE = {"api_key": "hg_noscope_key_0123456789"}
BAD = {"api_key": "sk-not-a-heygen-key-SECRET-0123"}
AVATAR = "Daniel_standing_public"
TALKING_PHOTO = "tp_5f0c1a2b3c4d"
VOICE = "1bd001e7e50f421d891986aad5158bc8"
HEADERS = {"X-Api-Key": CREDS["api_key"]}


@pytest.fixture
def heygen(provider_factory: Callable[[str], ThirdPartyProvider]) -> HeyGen:
    provider = provider_factory(IDENTIFIER)
    assert isinstance(provider, HeyGen)
    return provider


@pytest.fixture
def fast_jobs(sandbox_state: SandboxState) -> SandboxState:
    sandbox_state.faults_for(IDENTIFIER).job_seconds = 0.05
    return sandbox_state


def render(script: str = "Hello from the sandbox.", **extra: object) -> dict[str, object]:
    return {"script": script, "avatar_id": AVATAR, "voice_id": VOICE, **extra}


# -- identity ---------------------------------------------------------------------------------


async def test_check_connection_returns_the_sandbox_identity(heygen: HeyGen) -> None:
    account = await heygen.check_connection(CREDS)
    assert account.id.startswith("sandbox_")
    assert account.name == "Sandbox Creator"
    assert CREDS["api_key"] not in account.id
    assert account == await heygen.check_connection(CREDS)


async def test_key_without_user_read_falls_back_to_quota(
    heygen: HeyGen, sandbox_state: SandboxState
) -> None:
    account = await heygen.check_connection({**NO_SCOPE, "label": "Agency key"})
    assert account.id == heygen.fingerprint(NO_SCOPE["api_key"])
    assert account.name == "Agency key"
    assert sandbox_state.calls[f"{IDENTIFIER} GET /heygen/v2/user/remaining_quota"] == 1


async def test_invalid_key_is_invalid_credentials_without_the_secret(heygen: HeyGen) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await heygen.check_connection(BAD)
    assert caught.value.status == 401
    assert BAD["api_key"] not in str(caught.value)
    assert "SECRET" not in repr(caught.value)


# -- catalogues -------------------------------------------------------------------------------


async def test_avatars_include_talking_photos_and_filters_narrow_them(heygen: HeyGen) -> None:
    everything = await heygen.call("avatars", CREDS, {})
    kinds = {a.kind for a in everything}
    assert kinds == {"avatar", "talking_photo"}
    assert len(everything) == len(emulator.AVATARS) + len(emulator.TALKING_PHOTOS)

    male = await heygen.call("avatars", CREDS, {"gender": "male"})
    assert male
    assert all(a.gender == "male" and a.kind == "avatar" for a in male)
    assert len(male) < len(everything)

    annie = await heygen.call("avatars", CREDS, {"search": "annie"})
    assert {a.kind for a in annie} == {"avatar", "talking_photo"}


async def test_voices_filter_by_language_and_gender(heygen: HeyGen) -> None:
    everything = await heygen.call("voices", CREDS, {})
    assert len(everything) == len(emulator.VOICES)
    spanish = await heygen.call("voices", CREDS, {"language": "spanish"})
    assert {v.language for v in spanish} == {"Spanish"}
    assert len(spanish) == 2
    english_women = await heygen.call("voices", CREDS, {"language": "English", "gender": "female"})
    assert [v.name for v in english_women] == ["Rachel - Calm", "Amber - Friendly"]
    assert all(v.preview_audio_url for v in everything)


# -- renders ----------------------------------------------------------------------------------


async def test_full_render_lifecycle(
    heygen: HeyGen, fast_jobs: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    job = await heygen.send_data(CREDS, render(callback_id="run-7"))
    assert job.status is JobStatus.QUEUED
    assert fast_jobs.paid_calls[IDENTIFIER] == 1

    seen: list[RenderJob] = []
    done = await heygen.wait_for_job(CREDS, job.id, on_update=seen.append)

    assert done.status is JobStatus.SUCCEEDED
    assert done.vendor_status == "completed"
    assert done.raw["callback_id"] == "run-7"
    assert done.duration_seconds
    assert done.duration_seconds > 0
    assert done.result_expires_at is not None
    order = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    indexes = [order.index(update.status) for update in seen]
    assert indexes == sorted(indexes), "statuses only move forward"
    assert fast_jobs.paid_calls[IDENTIFIER] == 1, "polling is free"

    assert done.result_url is not None
    video = await sandbox_client.get(done.result_url)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"


async def test_talking_photo_render(heygen: HeyGen, fast_jobs: SandboxState) -> None:
    job = await heygen.send_data(
        CREDS, {"script": "Hi.", "talking_photo_id": TALKING_PHOTO, "voice_id": VOICE}
    )
    assert (await heygen.wait_for_job(CREDS, job.id)).status is JobStatus.SUCCEEDED


async def test_failed_render_raises_job_failed_with_the_vendor_reason(
    heygen: HeyGen, fast_jobs: SandboxState
) -> None:
    job = await heygen.send_data(CREDS, render("This one will [fail] on purpose."))
    with pytest.raises(JobFailed) as caught:
        await heygen.wait_for_job(CREDS, job.id)
    assert caught.value.provider == IDENTIFIER
    assert caught.value.code == "40039"
    assert "Invalid text detected" in caught.value.message
    assert caught.value.details["job_id"] == job.id


async def test_deadline_raises_job_deadline_exceeded_and_keeps_the_job_id(
    heygen: HeyGen, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for(IDENTIFIER).job_seconds = 30
    job = await heygen.send_data(CREDS, render())
    with pytest.raises(JobDeadlineExceeded) as caught:
        await heygen.wait_for_job(CREDS, job.id, deadline_seconds=0.1)
    assert caught.value.details["job_id"] == job.id
    assert not caught.value.allows_fallback


async def test_job_failure_rate_fails_renders_with_a_generic_reason(
    heygen: HeyGen, fast_jobs: SandboxState
) -> None:
    fast_jobs.faults_for(IDENTIFIER).job_failure_rate = 1.0
    job = await heygen.send_data(CREDS, render())
    with pytest.raises(JobFailed) as caught:
        await heygen.wait_for_job(CREDS, job.id)
    assert caught.value.code == "internal_error"
    assert caught.value.message.startswith("Video rendering failed")


async def test_default_deadline_comes_from_settings(
    tmp_path: Path, sandbox_state: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    sandbox_state.faults_for(IDENTIFIER).job_seconds = 30
    settings = make_settings(tmp_path, job_deadline_seconds=0.05)
    provider = get_provider(IDENTIFIER, settings=settings, client=sandbox_client)
    assert isinstance(provider, HeyGen)
    job = await provider.send_data(CREDS, render())
    with pytest.raises(JobDeadlineExceeded):
        await provider.wait_for_job(CREDS, job.id)


async def test_unknown_sandbox_ids_are_bad_requests(heygen: HeyGen) -> None:
    with pytest.raises(BadRequest) as caught:
        await heygen.get_job(CREDS, "no-such-video")
    assert caught.value.code == 40031
    with pytest.raises(BadRequest):
        await heygen.send_data(CREDS, {"script": "x", "avatar_id": "nobody", "voice_id": VOICE})


async def test_injected_429_is_retried_after_retry_after_then_succeeds(
    heygen: HeyGen, sandbox_state: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    faults = sandbox_state.faults_for(IDENTIFIER)
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 0.05
    limited: list[httpx.Response] = []

    async def lift_after_first_429(response: httpx.Response) -> None:
        if response.status_code == 429:
            limited.append(response)
            faults.rate_limit_rate = 0.0

    sandbox_client.event_hooks["response"].append(lift_after_first_429)

    job = await heygen.send_data(CREDS, render())

    assert job.id
    assert len(limited) == 1
    assert limited[0].headers["Retry-After"] == "0.05"
    assert sandbox_state.calls[f"{IDENTIFIER} POST /heygen/v2/video/generate"] == 2
    assert sandbox_state.paid_calls[IDENTIFIER] == 1, "the refused call was not paid for"


async def test_persistent_429_surfaces_rate_limited(
    heygen: HeyGen, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for(IDENTIFIER)
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 0.01
    with pytest.raises(RateLimited) as caught:
        await heygen.call("voices", CREDS, {})
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.code == 400123
    assert sandbox_state.calls[f"{IDENTIFIER} GET /heygen/v2/voices"] == 3


async def test_injected_server_errors_are_transient(
    tmp_path: Path, sandbox_state: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    settings = make_settings(tmp_path, http_max_attempts=1)
    provider = get_provider(IDENTIFIER, settings=settings, client=sandbox_client)
    sandbox_state.faults_for(IDENTIFIER).error_rate = 1.0
    with pytest.raises(Transient) as caught:
        await provider.check_connection(CREDS)
    assert caught.value.status == 503
    assert caught.value.code == "internal_error"


async def test_no_secret_in_any_error_from_the_sandbox(
    heygen: HeyGen, sandbox_state: SandboxState
) -> None:
    failures: list[ProviderError] = []
    for call in (
        heygen.check_connection(BAD),
        heygen.call("avatars", BAD, {}),
        heygen.send_data(BAD, render()),
        heygen.get_job(BAD, "vid"),
    ):
        with pytest.raises(ProviderError) as caught:
            await call
        failures.append(caught.value)
    assert all(isinstance(f, InvalidCredentials) for f in failures)
    for failure in failures:
        assert BAD["api_key"] not in str(failure)
        assert BAD["api_key"] not in repr(failure.to_dict())
    assert sandbox_state.paid_calls[IDENTIFIER] == 0


# -- the emulator's own shapes (contract, not client) -----------------------------------------


async def test_emulator_shapes_follow_the_contract(
    sandbox_client: httpx.AsyncClient, fast_jobs: SandboxState
) -> None:
    me = (await sandbox_client.get("/heygen/v1/user/me", headers=HEADERS)).json()
    assert me["code"] == 100
    assert set(me["data"]) >= {"username", "email", "first_name", "last_name"}

    avatars = (await sandbox_client.get("/heygen/v2/avatars", headers=HEADERS)).json()
    assert avatars["error"] is None
    assert set(avatars["data"]["avatars"][0]) >= {
        "avatar_id", "avatar_name", "gender", "preview_image_url", "preview_video_url",
    }  # fmt: skip
    assert set(avatars["data"]["talking_photos"][0]) >= {
        "talking_photo_id", "talking_photo_name", "preview_image_url",
    }  # fmt: skip

    voices = (await sandbox_client.get("/heygen/v2/voices", headers=HEADERS)).json()
    assert set(voices["data"]["voices"][0]) >= {
        "voice_id", "name", "language", "gender", "preview_audio", "support_pause",
        "emotion_support",
    }  # fmt: skip

    quota = (await sandbox_client.get("/heygen/v2/user/remaining_quota", headers=HEADERS)).json()
    assert set(quota["data"]) == {"remaining_quota", "details"}

    body = {
        "video_inputs": [
            {
                "character": {"type": "avatar", "avatar_id": AVATAR, "avatar_style": "normal"},
                "voice": {"type": "text", "voice_id": VOICE, "input_text": "Hi"},
            }
        ]
    }
    created = await sandbox_client.post("/heygen/v2/video/generate", json=body, headers=HEADERS)
    assert created.status_code == 200
    video_id = created.json()["data"]["video_id"]
    assert created.json()["error"] is None

    status = await sandbox_client.get(
        "/heygen/v1/video_status.get", params={"video_id": video_id}, headers=HEADERS
    )
    data = status.json()["data"]
    assert status.json()["code"] == 100
    assert set(data) >= {
        "id", "status", "video_url", "thumbnail_url", "gif_url", "caption_url",
        "video_url_caption", "duration", "callback_id", "created_at", "error",
    }  # fmt: skip
    assert data["status"] in {"pending", "processing"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/heygen/v1/user/me", {"code": 40009, "data": None,
                                "message": "Invalid credentials provided"}),
        ("/heygen/v2/avatars", {"data": None,
                                "error": {"code": "internal_error", "message": "Unauthorized"}}),
    ],
)  # fmt: skip
async def test_emulator_401_bodies(
    sandbox_client: httpx.AsyncClient, path: str, expected: dict[str, object]
) -> None:
    for headers in ({}, {"X-Api-Key": "wrong"}):
        response = await sandbox_client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json() == expected


async def test_emulator_refuses_user_me_for_keys_without_user_read(
    sandbox_client: httpx.AsyncClient,
) -> None:
    headers = {"X-Api-Key": NO_SCOPE["api_key"]}
    refused = await sandbox_client.get("/heygen/v1/user/me", headers=headers)
    assert refused.status_code == 403
    assert "missing user-read" in refused.json()["message"]
    assert (await sandbox_client.get("/heygen/v2/voices", headers=headers)).status_code == 200


async def test_media_is_served_only_for_finished_renders(
    heygen: HeyGen, sandbox_state: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    sandbox_state.faults_for(IDENTIFIER).job_seconds = 30
    job = await heygen.send_data(CREDS, render())
    assert (await sandbox_client.get(f"/heygen/media/{job.id}.mp4")).status_code == 404
    assert (await sandbox_client.get("/heygen/media/unknown.mp4")).status_code == 404
