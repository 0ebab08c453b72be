"""Completion callbacks: each vendor's verifier and parser, then the emulators' real deliveries.

Signatures are computed here from the contract's recipe (not with the module under test), so a
verifier and a signer that agree on something wrong would still fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from arkyra.errors import InvalidInput, NotFound
from arkyra.providers import ThirdPartyProvider
from arkyra.providers.jobs import JobStatus
from arkyra.providers.video.callbacks import (
    SOURCES,
    CallbackIgnored,
    CallbackRejected,
    d_id_callback_url,
    handle_render_callback,
    new_callback_token,
)
from arkyra.providers.video.synthesia import SynthesiaProvider
from arkyra.sandbox.state import SandboxState

NOW = 1_790_000_000.0
HEYGEN_SECRET = "whsec_heygen_endpoint_secret_0123"
SYNTHESIA_SECRET = "synthesia_webhook_secret_0123456789"
D_ID_TOKEN = "d-id-callback-token-0123456789abcdef"
SECRETS = {"heygen": HEYGEN_SECRET, "synthesia": SYNTHESIA_SECRET, "d-id": D_ID_TOKEN}


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# -- HeyGen -----------------------------------------------------------------------------------

HEYGEN_SUCCESS = {
    "event_type": "avatar_video.success",
    "event_data": {"video_id": "vid_1", "url": "https://cdn.heygen.test/vid_1.mp4",
                   "callback_id": "run-1", "thumbnail_url": "https://cdn/t.jpg", "duration": 3.2},
}  # fmt: skip


def test_heygen_success_event_becomes_a_succeeded_job() -> None:
    body = raw(HEYGEN_SUCCESS)
    headers = {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, body)}

    job = handle_render_callback("heygen", headers, body, secrets=SECRETS)

    assert (job.provider, job.id, job.status) == ("heygen", "vid_1", JobStatus.SUCCEEDED)
    assert job.result_url == "https://cdn.heygen.test/vid_1.mp4"
    assert job.result_expires_at is not None
    assert (job.thumbnail_url, job.duration_seconds) == ("https://cdn/t.jpg", 3.2)


def test_heygen_fail_event_keeps_the_reason() -> None:
    body = raw(
        {"event_type": "avatar_video.fail",
         "event_data": {"video_id": "vid_2", "msg": "Avatar not found", "error_code": 400105}}
    )  # fmt: skip
    job = handle_render_callback(
        "heygen", {"x-heygen-signature": hex_hmac(HEYGEN_SECRET, body)}, body, secrets=SECRETS
    )
    assert (job.status, job.failure_reason, job.failure_code) == (
        JobStatus.FAILED,
        "Avatar not found",
        "400105",
    )
    assert job.result_url is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-HeyGen-Signature": ""},
        {"X-HeyGen-Signature": "0" * 64},
        {"X-HeyGen-Signature": hex_hmac("whsec_wrong", raw(HEYGEN_SUCCESS))},
        {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, raw(HEYGEN_SUCCESS) + b" ")},
    ],
    ids=["missing", "empty", "zeros", "other-secret", "other-body"],
)
def test_heygen_bad_signatures_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(CallbackRejected):
        handle_render_callback("heygen", headers, raw(HEYGEN_SUCCESS), secrets=SECRETS)


def test_heygen_signature_forms_and_rotation() -> None:
    body = raw(HEYGEN_SUCCESS)
    old = "whsec_old_secret"
    rotating = {"heygen": [old, HEYGEN_SECRET]}
    for headers in (
        {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, body).upper()},
        {"X-HeyGen-Signature": "sha256=" + hex_hmac(HEYGEN_SECRET, body)},
        {"Signature": hex_hmac(HEYGEN_SECRET, body)},
        {"X-HeyGen-Signature": hex_hmac(old, body)},
    ):
        assert handle_render_callback("heygen", headers, body, secrets=rotating).id == "vid_1"


def test_heygen_other_events_are_ignored_after_verification() -> None:
    body = raw({"event_type": "video_translate.success", "event_data": {"video_id": "x"}})
    with pytest.raises(CallbackIgnored):
        handle_render_callback(
            "heygen", {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, body)}, body, secrets=SECRETS
        )
    with pytest.raises(CallbackRejected):
        handle_render_callback("heygen", {"X-HeyGen-Signature": "00"}, body, secrets=SECRETS)


# -- Synthesia --------------------------------------------------------------------------------

SYNTHESIA_COMPLETED = {
    "type": "video.completed",
    "data": {"id": "syn_1", "status": "complete", "download": "https://cdn.synthesia.test/1.mp4",
             "duration": "0:00:12.5", "thumbnail": {"image": "https://cdn/1.jpg"},
             "callbackId": "run-2"},
}  # fmt: skip


def synthesia_headers(body: bytes, timestamp: float = NOW, secret: str = SYNTHESIA_SECRET) -> dict:
    stamp = str(int(timestamp))
    return {
        "Synthesia-Timestamp": stamp,
        "Synthesia-Signature": hex_hmac(secret, stamp.encode() + b"." + body),
    }


def test_synthesia_completed_event() -> None:
    body = raw(SYNTHESIA_COMPLETED)
    job = handle_render_callback(
        "synthesia", synthesia_headers(body), body, secrets=SECRETS, now=NOW + 10
    )
    assert (job.id, job.status, job.result_url) == (
        "syn_1",
        JobStatus.SUCCEEDED,
        "https://cdn.synthesia.test/1.mp4",
    )
    assert job.duration_seconds == pytest.approx(12.5)
    assert job.thumbnail_url == "https://cdn/1.jpg"


def test_synthesia_failed_event() -> None:
    body = raw({"type": "video.failed", "data": {"id": "syn_2", "status": "rejected"}})
    job = handle_render_callback(
        "synthesia", synthesia_headers(body), body, secrets=SECRETS, now=NOW
    )
    assert (job.status, job.failure_code) == (JobStatus.FAILED, "rejected")
    assert job.result_url is None


@pytest.mark.parametrize(
    ("make_headers", "now"),
    [
        (lambda b: synthesia_headers(b, secret="other"), NOW),
        (lambda b: {**synthesia_headers(b), "Synthesia-Timestamp": str(int(NOW) + 1)}, NOW),
        (lambda b: synthesia_headers(b), NOW + 301),
        (lambda b: synthesia_headers(b), NOW - 301),
        (lambda b: {"Synthesia-Signature": synthesia_headers(b)["Synthesia-Signature"]}, NOW),
        (lambda b: {**synthesia_headers(b), "Synthesia-Timestamp": "yesterday"}, NOW),
        (lambda b: {"Synthesia-Timestamp": str(int(NOW)), "Synthesia-Signature": hex_hmac(
            SYNTHESIA_SECRET, b)}, NOW),
    ],
    ids=["other-secret", "timestamp-swapped", "too-old", "future", "no-timestamp",
         "bad-timestamp", "body-only-signature"],
)  # fmt: skip
def test_synthesia_rejections(make_headers: Callable[[bytes], dict], now: float) -> None:
    body = raw(SYNTHESIA_COMPLETED)
    with pytest.raises(CallbackRejected):
        handle_render_callback("synthesia", make_headers(body), body, secrets=SECRETS, now=now)


# -- D-ID -------------------------------------------------------------------------------------

D_ID_DONE = {"id": "tlk_1", "object": "talk", "status": "done",
             "result_url": "https://d-id.test/tlk_1.mp4", "duration": 8.5}  # fmt: skip


def test_d_id_token_in_the_url_authenticates() -> None:
    url = d_id_callback_url("https://api.example.com/hooks/d-id", D_ID_TOKEN)
    query = dict(httpx.URL(url).params)
    assert query == {"token": D_ID_TOKEN}

    job = handle_render_callback("d-id", {}, raw(D_ID_DONE), secrets=SECRETS, query=query)

    assert (job.id, job.status, job.result_url) == (
        "tlk_1",
        JobStatus.SUCCEEDED,
        "https://d-id.test/tlk_1.mp4",
    )
    assert d_id_callback_url("https://x/h?a=1", "t") == "https://x/h?a=1&token=t"


@pytest.mark.parametrize("query", [{}, {"token": ""}, {"token": D_ID_TOKEN[:-1]}, {"t": "x"}])
def test_d_id_without_the_right_token_is_rejected(query: dict[str, str]) -> None:
    with pytest.raises(CallbackRejected):
        handle_render_callback("d-id", {}, raw(D_ID_DONE), secrets=SECRETS, query=query)


def test_d_id_error_and_non_final_objects() -> None:
    query = {"token": D_ID_TOKEN}
    failed = handle_render_callback(
        "d-id",
        {},
        raw({"id": "clp_9", "status": "error",
             "error": {"kind": "FaceError", "description": "Could not animate the face"}}),
        secrets=SECRETS,
        query=query,
    )  # fmt: skip
    assert (failed.status, failed.failure_code, failed.failure_reason) == (
        JobStatus.FAILED,
        "FaceError",
        "Could not animate the face",
    )
    with pytest.raises(CallbackIgnored):
        handle_render_callback(
            "d-id", {}, raw({"id": "tlk_2", "status": "started"}), secrets=SECRETS, query=query
        )


def test_new_tokens_are_long_and_unique() -> None:
    tokens = {new_callback_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 40 for t in tokens)


# -- shared rules -----------------------------------------------------------------------------


def test_sources_and_unknown_source() -> None:
    assert set(SOURCES) == {"heygen", "synthesia", "d-id"}
    with pytest.raises(NotFound):
        handle_render_callback("runway", {}, b"{}", secrets=SECRETS)


@pytest.mark.parametrize("source", ["heygen", "synthesia", "d-id"])
@pytest.mark.parametrize("configured", [{}, {"heygen": "", "synthesia": [], "d-id": [""]}])
def test_no_configured_secret_fails_closed(source: str, configured: dict[str, Any]) -> None:
    with pytest.raises(CallbackRejected):
        handle_render_callback(
            source, {"X-HeyGen-Signature": "x"}, b"{}", secrets=configured, query={"token": ""}
        )


def test_bodies_are_checked_after_the_signature() -> None:
    for body in (b"not json", b"[1, 2]"):
        headers = {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, body)}
        with pytest.raises(InvalidInput):
            handle_render_callback("heygen", headers, body, secrets=SECRETS)
        with pytest.raises(CallbackRejected):
            handle_render_callback("heygen", {"X-HeyGen-Signature": "1"}, body, secrets=SECRETS)
    huge = b"{" + b" " * (1024 * 1024) + b"}"
    with pytest.raises(InvalidInput):
        handle_render_callback(
            "heygen", {"X-HeyGen-Signature": hex_hmac(HEYGEN_SECRET, huge)}, huge, secrets=SECRETS
        )


def test_rejections_never_show_a_secret() -> None:
    body = raw(HEYGEN_SUCCESS)
    for source, headers, query in (
        ("heygen", {"X-HeyGen-Signature": "00"}, None),
        ("synthesia", synthesia_headers(body, secret="x"), None),
        ("d-id", {}, {"token": "guess"}),
    ):
        with pytest.raises(CallbackRejected) as caught:
            handle_render_callback(source, headers, body, secrets=SECRETS, query=query, now=NOW)
        for secret in SECRETS.values():
            assert secret not in str(caught.value)


# -- real deliveries from the emulators -------------------------------------------------------


class Receiver:
    """An in-process callback target: records path, query, headers and body of every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], httpx.Headers, bytes]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = httpx.Headers([(k.decode(), v.decode()) for k, v in scope["headers"]])
        query = dict(httpx.QueryParams(scope["query_string"].decode()))
        self.received.append((scope["path"], query, headers, body))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def receiver(sandbox_state: SandboxState) -> Receiver:
    target = Receiver()
    sandbox_state.store("callbacks")["transport"] = httpx.ASGITransport(app=target)
    for vendor in ("synthesia", "d-id"):
        sandbox_state.faults_for(vendor).job_seconds = 0.05
    return target


SYNTHESIA_KEY = {"api_key": "syn_sandbox_key_0123456789"}
SYNTHESIA_CLIP = {
    "input": [{"avatar": "anna_costume1_cameraA", "background": "green_screen",
               "scriptText": "Hello from the webhook test."}],
    "callback_id": "run-3",
}  # fmt: skip


async def test_synthesia_emulator_delivers_signed_events(
    provider_factory: Callable[[str], ThirdPartyProvider],
    sandbox_client: httpx.AsyncClient,
    sandbox_state: SandboxState,
    receiver: Receiver,
) -> None:
    headers = {"Authorization": SYNTHESIA_KEY["api_key"]}
    registered = await sandbox_client.post(
        "/synthesia/v2/webhooks",
        json={"url": "https://hooks.test/hooks/synthesia", "events": ["video.completed"]},
        headers=headers,
    )
    assert registered.status_code == 201
    assert set(registered.json()) >= {"id", "url", "status", "secret", "createdAt"}
    secret = registered.json()["secret"]

    synthesia = provider_factory("synthesia")
    assert isinstance(synthesia, SynthesiaProvider)
    job = await synthesia.send_data(SYNTHESIA_KEY, SYNTHESIA_CLIP)
    failing = await synthesia.send_data(
        SYNTHESIA_KEY,
        {**SYNTHESIA_CLIP, "input": [{**SYNTHESIA_CLIP["input"][0], "scriptText": "[fail]"}]},
    )
    await receiver.wait_for(1)
    await asyncio.sleep(0.1)

    assert len(receiver.received) == 1, "video.failed was not subscribed"
    path, _query, got_headers, body = receiver.received[0]
    assert path == "/hooks/synthesia"
    update = handle_render_callback("synthesia", got_headers, body, secrets={"synthesia": secret})
    assert (update.id, update.status) == (job.id, JobStatus.SUCCEEDED)
    assert update.id != failing.id
    assert update.result_url == (await synthesia.get_job(SYNTHESIA_KEY, job.id)).result_url


async def test_d_id_emulator_posts_the_final_talk_to_the_webhook(
    provider_factory: Callable[[str], ThirdPartyProvider], receiver: Receiver
) -> None:
    token = new_callback_token()
    d_id = provider_factory("d-id")
    job = await d_id.send_data(
        {"api_key": "dk_sandbox:secret"},
        {
            "source_url": "https://images.example.com/face.jpg",
            "script": {"type": "text", "input": "Hello from D-ID.",
                       "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural"}},
            "webhook": d_id_callback_url("https://hooks.test/hooks/d-id", token),
        },
    )  # fmt: skip
    await receiver.wait_for(1)

    path, query, _headers, body = receiver.received[0]
    assert path == "/hooks/d-id"
    update = handle_render_callback("d-id", {}, body, secrets={"d-id": token}, query=query)
    assert (update.id, update.status) == (job.id, JobStatus.SUCCEEDED)
    assert update.result_url is not None
    with pytest.raises(CallbackRejected):
        handle_render_callback(
            "d-id", {}, body, secrets={"d-id": new_callback_token()}, query=query
        )
