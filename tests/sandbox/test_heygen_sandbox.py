"""HeyGen end to end: the real provider against the in-process sandbox (``provider_factory``).

Also checks the emulator's raw shapes against the contract, so that a client and an emulator
agreeing on something wrong would still be caught.
"""

from __future__ import annotations

import asyncio
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
from arkyra.providers.video.callbacks import CallbackRejected, handle_render_callback
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


# -- API v3 -----------------------------------------------------------------------------------

V3 = {**CREDS, "api_version": "v3"}
V3_NO_SCOPE = {**NO_SCOPE, "api_version": "v3"}
PHOTO_AVATAR = emulator.PHOTO_AVATARS[0]["photo_avatar_id"]


async def test_v3_identity_and_scope_fallback(heygen: HeyGen, sandbox_state: SandboxState) -> None:
    account = await heygen.check_connection(V3)
    assert account == await heygen.check_connection(CREDS), "same account through v2 and v3"
    anonymous = await heygen.check_connection(V3_NO_SCOPE)
    assert anonymous.id == heygen.fingerprint(NO_SCOPE["api_key"])
    assert sandbox_state.calls[f"{IDENTIFIER} GET /heygen/v3/avatars"] == 1


async def test_v3_avatars_list_public_photo_avatars_and_talking_photos(heygen: HeyGen) -> None:
    everything = await heygen.call("avatars", V3, {})
    assert {a.kind for a in everything} == {"avatar", "photo_avatar", "talking_photo"}
    assert len(everything) == (
        len(emulator.AVATARS) + len(emulator.PHOTO_AVATARS) + len(emulator.TALKING_PHOTOS)
    )
    public = [a for a in everything if a.public]
    assert {a.kind for a in public} == {"avatar"}

    mine = await heygen.call("avatars", V3, {"include_public": False})
    assert mine
    assert not any(a.public for a in mine)
    assert {a.kind for a in mine} == {"photo_avatar", "talking_photo"}

    photos = await heygen.call("avatars", V3, {"kind": "photo_avatar"})
    assert [a.id for a in photos] == [p["photo_avatar_id"] for p in emulator.PHOTO_AVATARS]


async def test_v3_voices(heygen: HeyGen) -> None:
    voices = await heygen.call("voices", V3, {"language": "Spanish"})
    assert [v.name for v in voices] == ["Elena - Warm", "Mateo - Clear"]
    assert all(v.preview_audio_url for v in voices)


@pytest.mark.parametrize("character", ["avatar_id", "talking_photo_id", "photo_avatar"])
async def test_v3_renders_every_kind_of_character(
    heygen: HeyGen, fast_jobs: SandboxState, sandbox_client: httpx.AsyncClient, character: str
) -> None:
    ids = {"avatar_id": AVATAR, "talking_photo_id": TALKING_PHOTO, "photo_avatar": PHOTO_AVATAR}
    field = "avatar_id" if character == "photo_avatar" else character
    job = await heygen.send_data(
        V3, {"script": "Hello v3.", field: ids[character], "voice_id": VOICE}
    )
    assert fast_jobs.paid_calls[IDENTIFIER] == 1

    done = await heygen.wait_for_job(V3, job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert done.result_url is not None
    assert (await sandbox_client.get(done.result_url)).content[4:8] == b"ftyp"
    assert fast_jobs.calls[f"{IDENTIFIER} GET /heygen/v3/videos/{job.id}"] >= 1
    assert not fast_jobs.calls[f"{IDENTIFIER} GET /heygen/v1/video_status.get"]


async def test_v3_failed_render_and_error_body(
    heygen: HeyGen, fast_jobs: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    job = await heygen.send_data(V3, render("This one will [fail]."))
    with pytest.raises(JobFailed) as failed:
        await heygen.wait_for_job(V3, job.id)
    assert failed.value.code == "40039"

    with pytest.raises(BadRequest) as bad:
        await heygen.send_data(V3, render(avatar_id="nobody"))
    assert bad.value.status == 400
    assert "param: avatar_id" in bad.value.message
    assert bad.value.details["doc_url"].startswith("https://")

    raw = await sandbox_client.get("/heygen/v3/videos/unknown", headers=HEADERS)
    assert raw.status_code == 404
    assert set(raw.json()["error"]) == {"code", "message", "param", "doc_url"}


async def test_v3_emulator_pages_with_next_token(sandbox_client: httpx.AsyncClient) -> None:
    first = (await sandbox_client.get("/heygen/v3/avatars?limit=4", headers=HEADERS)).json()
    assert first["has_more"] is True
    assert len(first["data"]) == 4
    rest = await sandbox_client.get(
        "/heygen/v3/avatars", params={"limit": 50, "token": first["next_token"]}, headers=HEADERS
    )
    assert rest.json()["has_more"] is False
    ids = [a["id"] for a in first["data"] + rest.json()["data"]]
    assert len(ids) == len(set(ids)) == 11
    unauthorized = await sandbox_client.get("/heygen/v3/voices")
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "unauthorized"


# -- completion webhooks and expiring URLs ----------------------------------------------------


class Receiver:
    """An in-process callback target: records every POST it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[str, httpx.Headers, bytes]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = httpx.Headers([(k.decode(), v.decode()) for k, v in scope["headers"]])
        self.received.append((scope["path"], headers, body))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def receiver(sandbox_state: SandboxState) -> Receiver:
    target = Receiver()
    sandbox_state.store("callbacks")["transport"] = httpx.ASGITransport(app=target)
    return target


@pytest.mark.parametrize("creds", [CREDS, V3], ids=["v2", "v3"])
async def test_registered_endpoint_gets_a_signed_completion_event(
    heygen: HeyGen, fast_jobs: SandboxState, receiver: Receiver, creds: dict[str, str]
) -> None:
    endpoint = await heygen.register_webhook(creds, {"url": "https://hooks.test/hooks/heygen"})
    assert endpoint.secret.startswith("whsec_")

    job = await heygen.send_data(creds, render(callback_id="run-9"))
    await receiver.wait_for(1)

    path, headers, body = receiver.received[0]
    assert path == "/hooks/heygen"
    update = handle_render_callback("heygen", headers, body, secrets={"heygen": endpoint.secret})
    assert (update.id, update.status) == (job.id, JobStatus.SUCCEEDED)
    assert update.raw["event_data"]["callback_id"] == "run-9"
    polled = await heygen.get_job(creds, job.id)
    assert update.result_url == polled.result_url
    with pytest.raises(CallbackRejected):
        handle_render_callback("heygen", headers, body, secrets={"heygen": "whsec_other"})


async def test_render_callback_url_also_gets_the_event_and_failures_say_why(
    heygen: HeyGen, fast_jobs: SandboxState, receiver: Receiver
) -> None:
    endpoint = await heygen.register_webhook(CREDS, {"url": "https://hooks.test/hooks/heygen"})
    await heygen.send_data(
        CREDS, render("Will [fail].", callback_url="https://hooks.test/hooks/heygen")
    )
    await heygen.send_data(CREDS, render(callback_url="https://elsewhere.test/cb"))
    await receiver.wait_for(3)
    await asyncio.sleep(0.05)
    assert len(receiver.received) == 3, "a registered URL given again is not sent twice"

    by_path: dict[str, list[tuple[httpx.Headers, bytes]]] = {}
    for path, headers, body in receiver.received:
        by_path.setdefault(path, []).append((headers, body))
    failed = [
        handle_render_callback("heygen", h, b, secrets={"heygen": endpoint.secret})
        for h, b in by_path["/hooks/heygen"]
    ]
    assert {j.status for j in failed} == {JobStatus.SUCCEEDED, JobStatus.FAILED}
    reason = next(j.failure_reason for j in failed if j.status is JobStatus.FAILED)
    assert reason is not None
    assert "Invalid text detected" in reason
    [(unregistered_headers, _)] = by_path["/cb"]
    assert emulator.SIGNATURE_HEADER not in unregistered_headers, "no endpoint, no secret"


async def test_expired_result_urls_are_refused_until_re_signed(
    heygen: HeyGen, fast_jobs: SandboxState, sandbox_client: httpx.AsyncClient
) -> None:
    fast_jobs.store(IDENTIFIER)["url_ttl_seconds"] = 0.0
    job = await heygen.send_data(CREDS, render())
    done = await heygen.wait_for_job(CREDS, job.id)
    assert done.result_url is not None
    assert "expires=" in done.result_url
    expired = await sandbox_client.get(done.result_url)
    assert expired.status_code == 403

    fast_jobs.store(IDENTIFIER)["url_ttl_seconds"] = 60.0
    fresh = await heygen.get_job(CREDS, job.id)
    assert fresh.result_url != done.result_url
    assert (await sandbox_client.get(fresh.result_url or "")).status_code == 200
