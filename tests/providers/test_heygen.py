"""HeyGen provider against the contract, with respx standing in for api.heygen.com.

Request shapes (method, path, X-Api-Key, exact JSON), every documented error code, the
``user:read`` fallback, status mapping and secret hygiene. The sandbox tests cover the full
render lifecycle end to end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from arkyra.errors import (
    BadRequest,
    ContentRejected,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import get_provider, provider_class
from arkyra.providers.jobs import JobStatus
from arkyra.providers.video.heygen import (
    HEYGEN_ERROR_CODES,
    HeyGen,
    HeyGenVideoRequest,
    job_from_status,
)
from tests.conftest import make_settings

BASE = "https://api.heygen.com"
KEY = "hg_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CREDS = {"api_key": KEY}

RATE_LIMITED = {"code": 400123, "message": "Exceed rate limit"}

USER_ME = {
    "code": 100,
    "data": {
        "username": "ada_l",
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
    },
    "message": "Success",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def heygen(tmp_path: Path, http: httpx.AsyncClient) -> HeyGen:
    """The provider pointed at the real base URL; one attempt so error tests stay fast."""
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=1)
    provider = get_provider("heygen", settings=settings, client=http)
    assert isinstance(provider, HeyGen)
    return provider


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def sent_json(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# -- registration -----------------------------------------------------------------------------


def test_registered_with_contract_fields() -> None:
    cls = provider_class("heygen")
    assert cls is HeyGen
    assert cls.category == "video"
    assert cls.default_base_url == BASE
    assert [(f.name, f.is_secret, f.required) for f in cls.fields] == [
        ("api_key", True, True),
        ("api_version", False, False),
    ]
    version = cls.fields[1]
    assert (version.kind, version.options, version.default) == ("select", ("v2", "v3"), None)
    assert set(cls.exposed) == {"avatars", "voices"}


def test_base_url_comes_from_settings(tmp_path: Path) -> None:
    assert get_provider("heygen", settings=make_settings(tmp_path, sandbox=False)).base_url == BASE
    sandboxed = get_provider("heygen", settings=make_settings(tmp_path))
    assert sandboxed.base_url == "http://sandbox.test/heygen"


# -- check_connection -------------------------------------------------------------------------


async def test_check_connection_identifies_the_user(heygen: HeyGen, api: respx.MockRouter) -> None:
    route = api.get("/v1/user/me").respond(200, json=USER_ME)

    account = await heygen.check_connection(CREDS)

    assert (account.id, account.name) == ("ada_l", "Ada Lovelace")
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url == f"{BASE}/v1/user/me"
    assert request.headers["X-Api-Key"] == KEY


@pytest.mark.parametrize(
    ("user", "expected_name"),
    [
        ({"username": "u1", "email": "e@x.io", "first_name": "Ada", "last_name": ""}, "Ada"),
        ({"username": "u1", "email": "e@x.io", "first_name": None, "last_name": None}, "e@x.io"),
        ({"username": "u1", "email": "", "first_name": "", "last_name": ""}, "u1"),
    ],
)
async def test_account_name_falls_back_to_email_then_username(
    heygen: HeyGen, api: respx.MockRouter, user: dict[str, Any], expected_name: str
) -> None:
    api.get("/v1/user/me").respond(200, json={"code": 100, "data": user, "message": "Success"})
    account = await heygen.check_connection(CREDS)
    assert (account.id, account.name) == ("u1", expected_name)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, {"code": 400573, "message": "missing user-read to execute this operation."}),
        (401, {"code": 400112, "message": "missing user-read to execute this operation."}),
        (403, {"error": {"code": "forbidden", "message": "Key lacks the user:read scope"}}),
        (200, {"code": 400573, "message": "permission denied"}),
        (400, {"data": None, "error": {"code": "x", "message": "Missing user-read scope"}}),
    ],
)
async def test_key_without_user_read_is_proved_by_the_quota_call(
    heygen: HeyGen, api: respx.MockRouter, status: int, body: dict[str, Any]
) -> None:
    api.get("/v1/user/me").respond(status, json=body)
    quota = api.get("/v2/user/remaining_quota").respond(
        200, json={"error": None, "data": {"remaining_quota": 120, "details": {"api": 120}}}
    )

    account = await heygen.check_connection({**CREDS, "label": "Marketing key"})

    assert quota.called
    assert quota.calls.last.request.headers["X-Api-Key"] == KEY
    assert account.id == heygen.fingerprint(KEY)
    assert account.id.startswith("fp_")
    assert KEY not in account.id
    assert account.name == "Marketing key"
    unlabelled = await heygen.check_connection(CREDS)
    assert unlabelled.name == "HeyGen"
    assert unlabelled.id == account.id


async def test_invalid_key_does_not_fall_back(heygen: HeyGen, api: respx.MockRouter) -> None:
    api.get("/v1/user/me").respond(401, json={"code": 40009, "message": "Invalid credentials"})
    quota = api.get("/v2/user/remaining_quota").respond(200, json={"error": None, "data": {}})

    with pytest.raises(InvalidCredentials) as caught:
        await heygen.check_connection(CREDS)

    assert not quota.called
    assert caught.value.code == 40009
    assert caught.value.details["missing_scope"] is False


async def test_fallback_still_rejects_a_key_the_quota_call_refuses(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v1/user/me").respond(403, json={"code": 400573, "message": "permission denied"})
    api.get("/v2/user/remaining_quota").respond(
        401, json={"data": None, "error": {"code": "internal_error", "message": "Unauthorized"}}
    )
    with pytest.raises(InvalidCredentials):
        await heygen.check_connection(CREDS)


async def test_missing_api_key_is_invalid_credentials_without_a_request(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    route = api.get("/v1/user/me").respond(200, json=USER_ME)
    with pytest.raises(InvalidCredentials):
        await heygen.check_connection({"api_key": "  "})
    assert not route.called


# -- send_data --------------------------------------------------------------------------------


async def test_generate_body_with_every_option(heygen: HeyGen, api: respx.MockRouter) -> None:
    route = api.post("/v2/video/generate").respond(
        200, json={"error": None, "data": {"video_id": "vid_123"}}
    )
    request = HeyGenVideoRequest(
        script="Welcome to ARKYRA.",
        avatar_id="Daisy-inskirt-20220818",
        voice_id="2d5b0e6cf36f460aa7fc47e3eee4ba54",
        speed=1.1,
        background_color="#0A0B0C",
        width=1280,
        height=720,
        title="Weekly digest",
        caption=True,
        callback_id="run-42",
        test=True,
    )

    job = await heygen.send_data(CREDS, request)

    assert (job.provider, job.id, job.status) == ("heygen", "vid_123", JobStatus.QUEUED)
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert sent.url == f"{BASE}/v2/video/generate"
    assert sent.headers["X-Api-Key"] == KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert sent_json(route) == {
        "video_inputs": [
            {
                "character": {
                    "type": "avatar",
                    "avatar_id": "Daisy-inskirt-20220818",
                    "avatar_style": "normal",
                },
                "voice": {
                    "type": "text",
                    "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54",
                    "input_text": "Welcome to ARKYRA.",
                    "speed": 1.1,
                },
                "background": {"type": "color", "value": "#0A0B0C"},
            }
        ],
        "dimension": {"width": 1280, "height": 720},
        "title": "Weekly digest",
        "caption": True,
        "callback_id": "run-42",
        "test": True,
    }


async def test_generate_talking_photo_from_a_plain_dict(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    route = api.post("/v2/video/generate").respond(
        200, json={"error": None, "data": {"video_id": "vid_tp"}}
    )

    job = await heygen.send_data(
        CREDS, {"script": "  Hi!  ", "talking_photo_id": "tp_1", "voice_id": "v1"}
    )

    assert job.id == "vid_tp"
    assert sent_json(route) == {
        "video_inputs": [
            {
                "character": {"type": "talking_photo", "talking_photo_id": "tp_1"},
                "voice": {"type": "text", "voice_id": "v1", "input_text": "Hi!"},
            }
        ]
    }


@pytest.mark.parametrize(
    ("data", "bad_field"),
    [
        ({"script": "x", "voice_id": "v"}, "input"),
        ({"script": "x", "voice_id": "v", "avatar_id": "a", "talking_photo_id": "t"}, "input"),
        ({"script": "x", "avatar_id": "a"}, "voice_id"),
        ({"script": "", "avatar_id": "a", "voice_id": "v"}, "script"),
        ({"script": "x", "avatar_id": "a", "voice_id": "v", "speed": 3}, "speed"),
        ({"script": "x", "avatar_id": "a", "voice_id": "v", "background_color": "red"},
         "background_color"),
        ({"script": "x", "avatar_id": "a", "voice_id": "v", "width": 1280}, "input"),
        ({"script": "x", "avatar_id": "a", "voice_id": "v", "colour": "#000000"}, "colour"),
    ],
)  # fmt: skip
async def test_bad_input_is_invalid_input_per_field_and_sends_nothing(
    heygen: HeyGen, api: respx.MockRouter, data: dict[str, Any], bad_field: str
) -> None:
    route = api.post("/v2/video/generate").respond(200, json={"error": None, "data": {}})
    with pytest.raises(InvalidInput) as caught:
        await heygen.send_data(CREDS, data)
    assert bad_field in caught.value.errors
    assert not route.called


async def test_generate_without_video_id_is_not_a_retryable_error(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.post("/v2/video/generate").respond(200, json={"error": None, "data": {}})
    with pytest.raises(ProviderError) as caught:
        await heygen.send_data(CREDS, {"script": "x", "avatar_id": "a", "voice_id": "v"})
    assert not caught.value.retry_same_provider
    assert not caught.value.allows_fallback


async def test_a_rate_limited_generate_is_retried_after_retry_after(
    tmp_path: Path, http: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("heygen", settings=settings, client=http)
    route = api.post("/v2/video/generate").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}, json=RATE_LIMITED),
            httpx.Response(200, json={"error": None, "data": {"video_id": "vid_after_429"}}),
        ]
    )
    job = await provider.send_data(CREDS, {"script": "x", "avatar_id": "a", "voice_id": "v"})
    assert job.id == "vid_after_429"
    assert route.call_count == 2


async def test_a_failed_generate_is_not_repeated(
    tmp_path: Path, http: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    """A 5xx on the paid POST may have started a render: never send it twice."""
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("heygen", settings=settings, client=http)
    route = api.post("/v2/video/generate").respond(
        502, json={"data": None, "error": {"code": "internal_error", "message": "Bad gateway"}}
    )
    with pytest.raises(Transient):
        await provider.send_data(CREDS, {"script": "x", "avatar_id": "a", "voice_id": "v"})
    assert route.call_count == 1


# -- job status -------------------------------------------------------------------------------


def status_body(**data: Any) -> dict[str, Any]:
    return {"code": 100, "data": {"id": "vid_1", "error": None, **data}, "message": "Success"}


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("pending", JobStatus.QUEUED),
        ("waiting", JobStatus.QUEUED),
        ("processing", JobStatus.RUNNING),
        ("completed", JobStatus.SUCCEEDED),
        ("failed", JobStatus.FAILED),
        ("something_new", JobStatus.RUNNING),
    ],
)
async def test_get_job_maps_vendor_statuses(
    heygen: HeyGen, api: respx.MockRouter, vendor: str, expected: JobStatus
) -> None:
    route = api.get("/v1/video_status.get").respond(200, json=status_body(status=vendor))

    job = await heygen.get_job(CREDS, "vid_1")

    assert (job.status, job.vendor_status) == (expected, vendor)
    request = route.calls.last.request
    assert request.url.path == "/v1/video_status.get"
    assert request.url.params["video_id"] == "vid_1"
    assert request.headers["X-Api-Key"] == KEY


async def test_completed_job_keeps_result_thumbnail_duration_and_expiry(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v1/video_status.get").respond(
        200,
        json=status_body(
            status="completed",
            video_url="https://files.heygen.ai/v/vid_1.mp4?Expires=1",
            thumbnail_url="https://files.heygen.ai/v/vid_1.jpg",
            duration=12.48,
            callback_id="run-42",
        ),
    )
    before = datetime.now(UTC)

    job = await heygen.get_job(CREDS, "vid_1")

    assert job.result_url == "https://files.heygen.ai/v/vid_1.mp4?Expires=1"
    assert job.thumbnail_url == "https://files.heygen.ai/v/vid_1.jpg"
    assert job.duration_seconds == pytest.approx(12.48)
    assert job.result_expires_at is not None
    assert before + timedelta(days=7) <= job.result_expires_at
    assert job.result_expires_at <= datetime.now(UTC) + timedelta(days=7)
    assert job.failure_reason is None


async def test_failed_job_keeps_vendor_reason_and_code(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v1/video_status.get").respond(
        200,
        json=status_body(
            status="failed",
            error={"code": 40039, "message": "Invalid text detected", "detail": "Empty script"},
        ),
    )
    job = await heygen.get_job(CREDS, "vid_1")
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == "Invalid text detected: Empty script"
    assert job.failure_code == "40039"
    assert job.result_url is None


def test_failed_job_without_error_body_still_has_a_reason() -> None:
    job = job_from_status({"status": "failed"}, job_id="v", provider="heygen")
    assert job.failure_reason
    assert job.failure_code is None


async def test_get_job_rejects_an_empty_id(heygen: HeyGen) -> None:
    with pytest.raises(InvalidInput):
        await heygen.get_job(CREDS, " ")


# -- errors -----------------------------------------------------------------------------------

#: Every documented code, with the class written out here (not read from the table under test).
DOCUMENTED_CODES: list[tuple[int | str, type[ProviderError]]] = [
    (40009, InvalidCredentials),
    (400101, InvalidCredentials),
    (400112, InvalidCredentials),
    (401057, InvalidCredentials),
    (401056, InvalidCredentials),
    (400573, InvalidCredentials),
    (400562, InvalidCredentials),
    (400631, InvalidCredentials),
    (400561, BadRequest),
    (400599, QuotaExhausted),
    (40001, BadRequest),
    (400175, BadRequest),
    (40012, BadRequest),
    (40065, BadRequest),
    (40039, BadRequest),
    (400105, ContentRejected),
    (40010, BadRequest),
    (40031, BadRequest),
    (400652, BadRequest),
    (400621, BadRequest),
    (400624, BadRequest),
    (40044, BadRequest),
    (400123, RateLimited),
    ("unauthorized", InvalidCredentials),
    ("forbidden", InvalidCredentials),
    ("resource_access_denied", InvalidCredentials),
    ("insufficient_credit", QuotaExhausted),
]


def test_every_documented_code_is_in_the_table() -> None:
    assert set(HEYGEN_ERROR_CODES) == {code for code, _ in DOCUMENTED_CODES}


@pytest.mark.parametrize(("code", "expected"), DOCUMENTED_CODES)
@pytest.mark.parametrize("status", [200, 400])
async def test_documented_codes_map_to_their_class(
    heygen: HeyGen,
    api: respx.MockRouter,
    code: int | str,
    expected: type[ProviderError],
    status: int,
) -> None:
    """Legacy codes arrive in ``{code, message}``, v3 codes in ``{error: {code, message}}``."""
    if isinstance(code, int):
        body: dict[str, Any] = {"code": code, "message": "vendor says no"}
    else:
        body = {"error": {"code": code, "message": "vendor says no", "doc_url": "https://d"}}
    api.get("/v2/voices").respond(status, json=body)

    with pytest.raises(ProviderError) as caught:
        await heygen.call("voices", CREDS, {})

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.status == status
    assert caught.value.message == "vendor says no"


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (429, {"code": 400123, "message": "Exceed rate limit"}, {"Retry-After": "7"}, RateLimited),
        (429, {"error": {"code": "insufficient_credit", "message": "5 < 10"}}, {}, QuotaExhausted),
        (429, {"code": 400140, "message": "Daily quota exceeded"}, {}, QuotaExhausted),
        (429, {"error": "You have run out of credits"}, {}, QuotaExhausted),
        (429, {"error": "Too many requests"}, {}, RateLimited),
        (401, {"data": None, "error": {"code": "internal_error", "message": "Unauthorized"}},
         {}, InvalidCredentials),
        (403, {"message": "Forbidden"}, {}, InvalidCredentials),
        (402, {"error": {"code": "payment_required", "message": "Upgrade"}}, {}, QuotaExhausted),
        (500, {"data": None, "error": {"code": "internal_error", "message": "boom"}}, {},
         Transient),
        (503, {"code": 40009, "message": "upstream auth service down"}, {}, Transient),
        (502, None, {}, Transient),
        (400, {"data": None, "error": {"code": "invalid_parameter", "message": "bad"}}, {},
         BadRequest),
        (404, {"code": 404, "message": "Not Found"}, {}, BadRequest),
        (200, {"error": "avatar not found", "data": None}, {}, BadRequest),
        (200, {"code": 99999, "message": "something new"}, {}, BadRequest),
    ],
)  # fmt: skip
async def test_status_and_body_shapes_map_to_the_taxonomy(
    heygen: HeyGen,
    api: respx.MockRouter,
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    expected: type[ProviderError],
) -> None:
    if body is None:
        api.get("/v2/avatars").respond(status, text="<html>Bad gateway</html>", headers=headers)
    else:
        api.get("/v2/avatars").respond(status, json=body, headers=headers)

    with pytest.raises(ProviderError) as caught:
        await heygen.call("avatars", CREDS, {})

    assert type(caught.value) is expected
    assert caught.value.provider == "heygen"


async def test_rate_limit_keeps_retry_after(heygen: HeyGen, api: respx.MockRouter) -> None:
    api.get("/v2/avatars").respond(
        429, json={"code": 400123, "message": "Exceed rate limit"}, headers={"Retry-After": "7"}
    )
    with pytest.raises(RateLimited) as caught:
        await heygen.call("avatars", CREDS, {})
    assert caught.value.retry_after == 7.0
    assert caught.value.code == 400123


async def test_legacy_success_code_and_null_error_are_not_errors(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v2/voices").respond(
        200, json={"code": 100, "error": None, "data": {"voices": []}, "message": "Success"}
    )
    assert await heygen.call("voices", CREDS, {}) == []


async def test_secret_never_appears_in_raised_errors(heygen: HeyGen, api: respx.MockRouter) -> None:
    """Even when the vendor echoes the key back, the exception text does not carry it."""
    echo = f"API key {KEY} is not valid"
    api.get("/v1/user/me").respond(401, json={"code": 40009, "message": echo})
    api.get("/v2/avatars").respond(401, text=echo)
    api.post("/v2/video/generate").respond(
        400, json={"data": None, "error": {"code": "invalid_parameter", "message": echo}}
    )
    api.get("/v1/video_status.get").respond(500, json={"error": echo})

    raised: list[BaseException] = []
    calls = [
        heygen.check_connection(CREDS),
        heygen.call("avatars", CREDS, {}),
        heygen.send_data(CREDS, {"script": "x", "avatar_id": "a", "voice_id": "v"}),
        heygen.get_job(CREDS, "vid_1"),
    ]
    for call in calls:
        with pytest.raises(ProviderError) as caught:
            await call
        raised.append(caught.value)

    assert len(raised) == 4
    for exc in raised:
        assert KEY not in str(exc)
        assert KEY not in repr(exc)
        assert KEY not in json.dumps(exc.to_dict())
        assert "[redacted]" in exc.message


# -- exposed catalogues -----------------------------------------------------------------------

AVATARS_BODY = {
    "error": None,
    "data": {
        "avatars": [
            {"avatar_id": "a_f1", "avatar_name": "Abigail Office", "gender": "female",
             "preview_image_url": "https://p/a_f1.jpg", "preview_video_url": "https://p/a_f1.mp4",
             "premium": True},
            {"avatar_id": "a_m1", "avatar_name": "Brandon Office", "gender": "male",
             "preview_image_url": "https://p/a_m1.jpg"},
            {"avatar_id": "a_m2", "avatar_name": "Daniel Standing", "gender": "Male"},
            {"avatar_name": "no id, skipped"},
        ],
        "talking_photos": [
            {"talking_photo_id": "tp_1", "talking_photo_name": "Founder Office Portrait",
             "preview_image_url": "https://p/tp_1.jpg"},
            {"talking_photo_id": "tp_2", "talking_photo_name": "Support Photo"},
        ],
    },
}  # fmt: skip


async def test_avatars_lists_avatars_and_talking_photos(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    route = api.get("/v2/avatars").respond(200, json=AVATARS_BODY)

    everything = await heygen.call("avatars", CREDS, {})

    assert route.calls.last.request.headers["X-Api-Key"] == KEY
    assert [(a.id, a.kind) for a in everything] == [
        ("a_f1", "avatar"),
        ("a_m1", "avatar"),
        ("a_m2", "avatar"),
        ("tp_1", "talking_photo"),
        ("tp_2", "talking_photo"),
    ]
    first = everything[0]
    assert (first.name, first.gender, first.premium) == ("Abigail Office", "female", True)
    assert first.preview_video_url == "https://p/a_f1.mp4"
    assert everything[3].preview_image_url == "https://p/tp_1.jpg"


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"gender": "male"}, ["a_m1", "a_m2"]),
        ({"gender": "FEMALE"}, ["a_f1"]),
        ({"search": "office"}, ["a_f1", "a_m1", "tp_1"]),
        ({"search": "TP_2"}, ["tp_2"]),
        ({"kind": "talking_photo"}, ["tp_1", "tp_2"]),
        ({"gender": "male", "search": "daniel"}, ["a_m2"]),
        ({"search": "nobody"}, []),
    ],
)
async def test_avatar_filters(
    heygen: HeyGen, api: respx.MockRouter, params: dict[str, str], ids: list[str]
) -> None:
    api.get("/v2/avatars").respond(200, json=AVATARS_BODY)
    assert [a.id for a in await heygen.call("avatars", CREDS, params)] == ids


VOICES_BODY = {
    "error": None,
    "data": {
        "voices": [
            {"voice_id": "v_en_f", "name": "Rachel", "language": "English", "gender": "female",
             "preview_audio": "https://p/v_en_f.mp3", "support_pause": True,
             "emotion_support": True},
            {"voice_id": "v_en_m", "name": "Paul", "language": "English", "gender": "Male",
             "support_pause": False, "emotion_support": False},
            {"voice_id": "v_es_f", "name": "Elena", "language": "Spanish", "gender": "female"},
        ]
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({}, ["v_en_f", "v_en_m", "v_es_f"]),
        ({"language": "english"}, ["v_en_f", "v_en_m"]),
        ({"gender": "female"}, ["v_en_f", "v_es_f"]),
        ({"language": "English", "gender": "male"}, ["v_en_m"]),
        ({"language": "German"}, []),
    ],
)
async def test_voice_filters(
    heygen: HeyGen, api: respx.MockRouter, params: dict[str, str], ids: list[str]
) -> None:
    api.get("/v2/voices").respond(200, json=VOICES_BODY)
    voices = await heygen.call("voices", CREDS, params)
    assert [v.id for v in voices] == ids


async def test_voice_fields(heygen: HeyGen, api: respx.MockRouter) -> None:
    api.get("/v2/voices").respond(200, json=VOICES_BODY)
    rachel = (await heygen.call("voices", CREDS, {}))[0]
    assert rachel.model_dump() == {
        "id": "v_en_f",
        "name": "Rachel",
        "language": "English",
        "gender": "female",
        "preview_audio_url": "https://p/v_en_f.mp3",
        "supports_pause": True,
        "supports_emotion": True,
    }


async def test_exposed_inputs_reject_unknown_filters(heygen: HeyGen) -> None:
    with pytest.raises(InvalidInput) as caught:
        await heygen.call("voices", CREDS, {"accent": "British"})
    assert "accent" in caught.value.errors


# -- API v3 -----------------------------------------------------------------------------------

V3 = {**CREDS, "api_version": "v3"}


def test_api_version_defaults_to_v2_and_is_validated() -> None:
    assert HeyGen.api_version(CREDS) == "v2"
    assert HeyGen.api_version({**CREDS, "api_version": " V3 "}) == "v3"
    assert HeyGen.validate_credentials(CREDS) == CREDS, "nothing added to stored credentials"
    assert HeyGen.validate_credentials(V3)["api_version"] == "v3"
    with pytest.raises(InvalidInput) as caught:
        HeyGen.validate_credentials({**CREDS, "api_version": "v4"})
    assert "api_version" in caught.value.errors
    with pytest.raises(InvalidInput):
        HeyGen.api_version({**CREDS, "api_version": "v1"})


async def test_v3_check_connection_uses_users_me(heygen: HeyGen, api: respx.MockRouter) -> None:
    legacy = api.get("/v1/user/me").respond(200, json=USER_ME)
    route = api.get("/v3/users/me").respond(
        200, json={"data": {**USER_ME["data"], "billing_type": "subscription"}}
    )

    account = await heygen.check_connection(V3)

    assert (account.id, account.name) == ("ada_l", "Ada Lovelace")
    assert route.calls.last.request.headers["X-Api-Key"] == KEY
    assert not legacy.called


async def test_v3_key_without_user_read_is_proved_by_a_list_call(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v3/users/me").respond(
        403, json={"error": {"code": "forbidden", "message": "missing user-read", "doc_url": "d"}}
    )
    probe = api.get("/v3/avatars").respond(200, json={"data": [], "has_more": False})

    account = await heygen.check_connection(V3)

    assert probe.calls.last.request.url.params["limit"] == "1"
    assert account.id == heygen.fingerprint(KEY)


async def test_v3_render_body_and_response(heygen: HeyGen, api: respx.MockRouter) -> None:
    legacy = api.post("/v2/video/generate").respond(200, json={"data": {"video_id": "x"}})
    route = api.post("/v3/videos").respond(200, json={"data": {"video_id": "v3_vid"}})

    job = await heygen.send_data(
        V3,
        {
            "script": "Hello v3",
            "talking_photo_id": "tp_1",
            "voice_id": "v1",
            "speed": 1.2,
            "background_color": "#112233",
            "width": 1080,
            "height": 1920,
            "title": "Launch",
            "caption": True,
            "callback_id": "job-42",
            "callback_url": "https://hooks.example.com/hooks/heygen",
            "test": True,
        },
    )

    assert (job.id, job.status) == ("v3_vid", JobStatus.QUEUED)
    assert not legacy.called
    assert sent_json(route) == {
        "type": "avatar",
        "avatar_id": "tp_1",
        "script": "Hello v3",
        "voice_id": "v1",
        "voice_settings": {"speed": 1.2},
        "background": {"type": "color", "value": "#112233"},
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "title": "Launch",
        "enable_caption": True,
        "callback_id": "job-42",
        "callback_url": "https://hooks.example.com/hooks/heygen",
        "test": True,
    }


async def test_v2_render_sends_callback_url(heygen: HeyGen, api: respx.MockRouter) -> None:
    route = api.post("/v2/video/generate").respond(200, json={"data": {"video_id": "v"}})
    await heygen.send_data(
        CREDS,
        {"script": "Hi", "avatar_id": "a", "voice_id": "v", "callback_url": "https://h.io/x"},
    )
    assert sent_json(route)["callback_url"] == "https://h.io/x"


async def test_v3_get_job_maps_status_and_failure_fields(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    done = api.get("/v3/videos/v_ok").respond(
        200,
        json={"data": {"id": "v_ok", "status": "completed", "video_url": "https://cdn/v.mp4",
                       "thumbnail_url": "https://cdn/v.jpg", "duration": 4.5}},
    )  # fmt: skip
    api.get("/v3/videos/v_bad").respond(
        200,
        json={"data": {"id": "v_bad", "status": "failed", "failure_code": "40039",
                       "failure_message": "Invalid text detected"}},
    )  # fmt: skip

    ok = await heygen.get_job(V3, "v_ok")
    bad = await heygen.get_job(V3, "v_bad")

    assert done.calls.last.request.headers["X-Api-Key"] == KEY
    assert (ok.status, ok.result_url, ok.duration_seconds) == (
        JobStatus.SUCCEEDED,
        "https://cdn/v.mp4",
        4.5,
    )
    assert ok.result_expires_at is not None
    assert (bad.status, bad.failure_code, bad.failure_reason) == (
        JobStatus.FAILED,
        "40039",
        "Invalid text detected",
    )


def v3_page(items: list[dict[str, Any]], next_token: str | None) -> dict[str, Any]:
    return {"data": items, "has_more": next_token is not None, "next_token": next_token}


async def test_v3_avatars_follow_pages_and_keep_kinds(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    route = api.get("/v3/avatars")
    route.side_effect = [
        httpx.Response(200, json=v3_page([
            {"id": "a_pub", "name": "Monica", "gender": "female", "avatar_type": "studio_avatar",
             "ownership": "public", "default_voice_id": "v1"},
            {"id": "pa_1", "name": "My Photo Avatar", "avatar_type": "photo_avatar",
             "ownership": "private"},
        ], "tok2")),
        httpx.Response(200, json=v3_page([
            {"id": "tp_1", "name": "Talking Photo", "avatar_type": "talking_photo",
             "ownership": "private"},
        ], None)),
    ]  # fmt: skip

    found = await heygen.call("avatars", V3, {})

    assert [(a.id, a.kind, a.public) for a in found] == [
        ("a_pub", "avatar", True),
        ("pa_1", "photo_avatar", False),
        ("tp_1", "talking_photo", False),
    ]
    assert found[0].default_voice_id == "v1"
    first, second = (call.request.url.params for call in route.calls)
    assert dict(first) == {"limit": "50"}
    assert second["token"] == "tok2"


async def test_v3_avatars_without_public_ask_for_private_ones(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    route = api.get("/v3/avatars").respond(
        200,
        json=v3_page([
            {"id": "pa_1", "name": "Mine", "avatar_type": "photo_avatar", "ownership": "private"},
            {"id": "a_pub", "name": "Stock", "ownership": "public"},
        ], None),
    )  # fmt: skip

    found = await heygen.call("avatars", V3, {"include_public": False, "kind": "photo_avatar"})

    assert route.calls.last.request.url.params["ownership"] == "private"
    assert [a.id for a in found] == ["pa_1"]


async def test_v2_include_public_false_drops_known_public_avatars(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.get("/v2/avatars").respond(
        200,
        json={"error": None, "data": {"avatars": [
            {"avatar_id": "pub", "avatar_name": "Stock", "is_public": True},
            {"avatar_id": "own", "avatar_name": "Mine", "is_public": False},
        ], "talking_photos": [{"talking_photo_id": "tp", "talking_photo_name": "P"}]}},
    )  # fmt: skip
    assert [a.id for a in await heygen.call("avatars", CREDS, {})] == ["pub", "own", "tp"]
    mine = await heygen.call("avatars", CREDS, {"include_public": False})
    assert [a.id for a in mine] == ["own", "tp"]


async def test_v3_voices_follow_pages(heygen: HeyGen, api: respx.MockRouter) -> None:
    route = api.get("/v3/voices")
    route.side_effect = [
        httpx.Response(200, json=v3_page([
            {"voice_id": "v1", "name": "Rachel", "language": "English", "gender": "female",
             "preview_audio_url": "https://p/v1.mp3"},
        ], "2")),
        httpx.Response(200, json=v3_page([
            {"voice_id": "v2", "name": "Mateo", "language": "Spanish", "gender": "male"},
        ], None)),
    ]  # fmt: skip

    voices = await heygen.call("voices", V3, {"language": "spanish"})

    assert [v.id for v in voices] == ["v2"]
    assert route.call_count == 2
    assert route.calls[1].request.url.params["token"] == "2"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "unauthorized", InvalidCredentials),
        (402, "insufficient_credit", QuotaExhausted),
        (403, "resource_access_denied", InvalidCredentials),
        (404, "not_found", BadRequest),
        (400, "invalid_parameter", BadRequest),
        (429, "rate_limit_exceeded", RateLimited),
        (500, "internal_error", Transient),
    ],
)
async def test_v3_error_bodies_map_and_keep_param_and_doc_url(
    heygen: HeyGen,
    api: respx.MockRouter,
    status: int,
    code: str,
    expected: type[ProviderError],
) -> None:
    api.get("/v3/videos/x").respond(
        status,
        json={"error": {"code": code, "message": f"vendor says {code}", "param": "voice_id",
                        "doc_url": "https://developers.heygen.com/docs/error-codes"}},
    )  # fmt: skip
    with pytest.raises(expected) as caught:
        await heygen.get_job(V3, "x")
    error = caught.value
    assert error.code == code
    assert error.status == status
    assert f"vendor says {code}" in error.message
    assert "param: voice_id" in error.message
    assert error.details["doc_url"] == "https://developers.heygen.com/docs/error-codes"


@pytest.mark.parametrize(
    ("version", "path", "response"),
    [
        ("v2", "/v1/webhook/endpoint.add",
         {"code": 100, "data": {"endpoint_id": "ep_1", "url": "https://h.io/hooks/heygen",
                                "secret": "sec_v2", "events": ["avatar_video.success"],
                                "status": "enabled"}}),
        ("v3", "/v3/webhooks/endpoints",
         {"data": {"endpoint_id": "ep_1", "url": "https://h.io/hooks/heygen",
                   "secret": "sec_v2", "events": ["avatar_video.success"],
                   "status": "enabled"}}),
    ],
)  # fmt: skip
async def test_register_webhook_per_version(
    heygen: HeyGen, api: respx.MockRouter, version: str, path: str, response: dict[str, Any]
) -> None:
    route = api.post(path).respond(200, json=response)

    endpoint = await heygen.register_webhook(
        {**CREDS, "api_version": version}, {"url": "https://h.io/hooks/heygen"}
    )

    assert (endpoint.id, endpoint.secret, endpoint.status) == ("ep_1", "sec_v2", "enabled")
    assert "sec_v2" not in repr(endpoint)
    assert sent_json(route) == {
        "url": "https://h.io/hooks/heygen",
        "events": ["avatar_video.success", "avatar_video.fail"],
    }


async def test_register_webhook_without_secret_is_an_error(
    heygen: HeyGen, api: respx.MockRouter
) -> None:
    api.post("/v3/webhooks/endpoints").respond(200, json={"data": {"endpoint_id": "ep"}})
    with pytest.raises(ProviderError, match="no id or secret"):
        await heygen.register_webhook(V3, {"url": "https://h.io/x"})
    with pytest.raises(InvalidInput):
        await heygen.register_webhook(V3, {"url": "ftp://h.io/x"})
