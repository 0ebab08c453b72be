"""Wiring: the generated webhook secret shown once on connect, render callbacks through
``/hooks/{heygen|synthesia|d-id}`` to events and watchers, and the API's delivery worker
(410 -> integration ``error`` + an alert to the organization's other webhooks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from standardwebhooks.webhooks import Webhook

from arkyra import alerts
from arkyra.api.app import create_app
from arkyra.api.background import start_background
from arkyra.api.cache import MemoryFunctionCache
from arkyra.api.errors import install_error_handlers
from arkyra.api.routes.hooks import router as hooks_router
from arkyra.config import Settings
from arkyra.credentials.store import CredentialStore
from arkyra.db.models import IntegrationStatus
from arkyra.db.session import Database
from arkyra.delivery.queue import Outbox
from arkyra.pipelines.hooks import MemoryDeliveryLog, StaticHookSecrets
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.automation._hooks import HookProvider
from arkyra.providers.jobs import JobStatus, RenderJob
from arkyra.providers.video.callbacks import heygen_signature, synthesia_signature
from arkyra.providers.video.completion import JobWatcher, WatcherRegistry
from arkyra.ratelimit import RateLimiter
from arkyra.security.tokens import mint_token
from arkyra.security.vault import Vault
from tests.api.conftest import HEYGEN_KEY
from tests.api.test_alerts import HOOK_SECRET, MemoryMirror, add_integration, make_store
from tests.delivery.conftest import FakeResolver

HOOK_URL = "https://hooks.example.com/events/inbox"
GONE_URL = "https://hooks.example.com/gone"
HEYGEN_SECRET = "heygen-endpoint-secret-0123456789"
SYNTHESIA_SECRET = "synthesia-webhook-secret-abcdef"
D_ID_TOKEN = "d-id-callback-token-0123456789abcdef"


# -- (a) connect returns the generated signing secret once ---------------------------------------


@pytest.fixture
async def api(
    db: Database, db_settings: Settings, sandbox_client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    def factory(identifier: str) -> ThirdPartyProvider:
        provider = get_provider(identifier, settings=db_settings, client=sandbox_client)
        if isinstance(provider, HookProvider):
            provider.resolver = FakeResolver()
        return provider

    store = CredentialStore(
        db, Vault.from_settings(db_settings), MemoryMirror(), settings=db_settings,  # type: ignore[arg-type]
        provider_factory=factory,
    )  # fmt: skip
    app = create_app(
        db_settings,
        store=store,
        limiter=RateLimiter(MemoryStorage()),
        cache=MemoryFunctionCache(),
        provider_factory=factory,
        http_client=sandbox_client,
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def admin(settings: Settings, org: str = "org-a") -> dict[str, str]:
    token = mint_token(settings, organization_id=org, role="admin")
    return {"Authorization": f"Bearer {token}"}


async def test_connecting_a_webhook_without_a_secret_returns_the_generated_one_once(
    api: httpx.AsyncClient, db: Database, db_settings: Settings
) -> None:
    headers = admin(db_settings)
    response = await api.post(
        "/third-party/webhooks", json={"fields": {"url": HOOK_URL}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    secret = body["signing_secret"]
    assert secret.startswith("whsec_")

    listed = await api.get("/third-party", headers=headers)
    assert secret not in listed.text
    again = await api.post(  # reconnecting with the secret: nothing generated, nothing shown
        "/third-party/webhooks",
        json={"fields": {"url": HOOK_URL, "secret": secret}},
        headers=headers,
    )
    assert again.status_code == 200
    assert "signing_secret" not in again.json()
    assert again.json()["id"] == body["id"]


async def test_other_providers_answer_without_a_signing_secret(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    response = await api.post(
        "/third-party/heygen", json={"fields": {"api_key": HEYGEN_KEY}}, headers=admin(db_settings)
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id", "identifier", "name"}


# -- (b) render completion callbacks -------------------------------------------------------------


class Events:
    def __init__(self, result: Any = "ok") -> None:
        self.emitted: list[dict[str, Any]] = []
        self.result = result

    def __call__(self, **event: Any) -> Any:
        self.emitted.append(event)
        return event if self.result == "ok" else self.result


@pytest.fixture
def registry() -> WatcherRegistry:
    return WatcherRegistry()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    recorder = Events()
    monkeypatch.setattr("arkyra.api.routes.hooks.emit_event", recorder)
    return recorder


@pytest.fixture
async def hooks(registry: WatcherRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(hooks_router)
    app.state.hook_secrets = StaticHookSecrets(
        {"heygen": f"old-secret-000000 {HEYGEN_SECRET}", "synthesia": SYNTHESIA_SECRET,
         "d-id": D_ID_TOKEN}
    )  # fmt: skip
    app.state.hook_delivery_log = MemoryDeliveryLog()
    app.state.render_watchers = registry
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def heygen_body(event: str = "avatar_video.success", video_id: str = "vid_1") -> bytes:
    data = {"video_id": video_id, "url": "https://cdn.example.com/v.mp4", "msg": "quota"}
    return json.dumps({"event_type": event, "event_data": data}).encode()


def heygen_headers(body: bytes, secret: str = HEYGEN_SECRET) -> dict[str, str]:
    return {"x-heygen-signature": heygen_signature(secret, body)}


async def test_a_signed_heygen_completion_becomes_an_event_once(
    hooks: httpx.AsyncClient, events: Events
) -> None:
    body = heygen_body()
    first = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))
    again = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))

    assert first.status_code == 202, first.text
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert first.json()["event_id"] == again.json()["event_id"]
    (event,) = events.emitted
    assert event["event"] == "render.succeeded"
    assert event["resource"]["prefect.resource.id"] == "arkyra.render.heygen.vid_1"
    assert event["payload"]["result_url"] == "https://cdn.example.com/v.mp4"
    assert "raw" not in event["payload"]
    assert str(event["id"]) == first.json()["event_id"]


async def test_forged_or_unsigned_callbacks_are_refused(
    hooks: httpx.AsyncClient, events: Events
) -> None:
    body = heygen_body()
    forged = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body, "bad"))
    unsigned = await hooks.post("/hooks/heygen", content=body)
    wrong_token = await hooks.post("/hooks/d-id?token=guess", content=b'{"id": "tlk_1"}')
    assert (forged.status_code, unsigned.status_code, wrong_token.status_code) == (401, 401, 401)
    assert events.emitted == []


async def test_other_heygen_events_are_acknowledged_and_dropped(
    hooks: httpx.AsyncClient, events: Events
) -> None:
    body = heygen_body(event="avatar_video_gif.success")
    response = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))
    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert events.emitted == []


async def test_synthesia_and_d_id_failures_are_emitted_as_render_failed(
    hooks: httpx.AsyncClient, events: Events
) -> None:
    video = {"id": "syn_1", "status": "error", "error": {"message": "bad script"}}
    body = json.dumps({"type": "video.failed", "data": video}).encode()
    stamp = str(int(time.time()))
    signed = {
        "synthesia-signature": synthesia_signature(SYNTHESIA_SECRET, stamp, body),
        "synthesia-timestamp": stamp,
    }
    synthesia = await hooks.post("/hooks/synthesia", content=body, headers=signed)
    talk = json.dumps({"id": "tlk_1", "status": "error", "error": {"kind": "Bad"}}).encode()
    d_id = await hooks.post(f"/hooks/d-id?token={D_ID_TOKEN}", content=talk)

    assert (synthesia.status_code, d_id.status_code) == (202, 202)
    assert [e["event"] for e in events.emitted] == ["render.failed", "render.failed"]
    assert events.emitted[0]["payload"]["failure_reason"] == "bad script"
    assert events.emitted[1]["resource"]["prefect.resource.id"] == "arkyra.render.d-id.tlk_1"


async def test_an_unreadable_callback_is_422(hooks: httpx.AsyncClient, events: Events) -> None:
    body = b"not json"
    response = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))
    assert response.status_code == 422
    assert events.emitted == []


async def test_a_waiting_watcher_completes_from_the_callback(
    hooks: httpx.AsyncClient, events: Events, registry: WatcherRegistry
) -> None:
    polled: list[int] = []

    async def fetch() -> RenderJob:
        polled.append(1)
        return RenderJob(provider="heygen", id="vid_2", status=JobStatus.RUNNING)

    watcher = JobWatcher(
        "heygen", "vid_2", fetch, initial_delay=0.01, max_delay=0.01,
        deadline_seconds=5, first_poll_delay=5,
    )  # fmt: skip
    waiting = asyncio.create_task(registry.wait(watcher))
    await asyncio.sleep(0)
    body = heygen_body(video_id="vid_2")
    response = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))

    job = await asyncio.wait_for(waiting, 2)
    assert response.status_code == 202
    assert job.result_url == "https://cdn.example.com/v.mp4"
    assert watcher.completed_by == "webhook"
    assert polled == []


async def test_without_events_or_a_watcher_the_vendor_is_told_to_retry(
    hooks: httpx.AsyncClient, events: Events, registry: WatcherRegistry
) -> None:
    events.result = None  # no Prefect API
    body = heygen_body(video_id="vid_3")
    first = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))
    again = await hooks.post("/hooks/heygen", content=body, headers=heygen_headers(body))
    assert (first.status_code, again.status_code) == (503, 503)  # not taken for a duplicate


# -- (c) the API's delivery worker ---------------------------------------------------------------


class Receiver:
    """The endpoints: ``/gone`` answers 410, anything else 200; requests are kept."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(410 if request.url.path == "/gone" else 200)


async def wait_for(check: Callable[[], Any], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_410_marks_the_integration_error_and_alerts_the_org(
    db: Database, db_settings: Settings
) -> None:
    store = make_store(db, db_settings)
    gone_endpoint = {"url": GONE_URL, "secret": HOOK_SECRET}
    gone = await add_integration(db, store, "org-a", credentials=gone_endpoint)
    channel_endpoint = {"url": HOOK_URL, "secret": HOOK_SECRET}
    channel = await add_integration(db, store, "org-a", credentials=channel_endpoint)
    await Outbox(db).enqueue(
        organization_id="org-a", integration_id=gone, identifier="webhooks",
        event_type="item.ready", data={"n": 1},
    )  # fmt: skip
    receiver = Receiver()
    app = FastAPI()
    app.state.db, app.state.store, app.state.settings = db, store, db_settings
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    background = await start_background(
        app, idle_seconds=0.02, client=client, resolver=FakeResolver()
    )
    try:
        assert alerts.current() is app.state.alerts

        async def alert_delivered() -> bool:
            return any(r.url.path == "/events/inbox" for r in receiver.requests)

        await wait_for(alert_delivered)
    finally:
        await background.stop()
        await client.aclose()
    assert alerts.current() is None
    assert background.task is not None
    assert background.task.done()

    marked = await store.get("org-a", gone)
    assert marked.status == IntegrationStatus.ERROR
    assert "410" in (marked.status_reason or "")
    (request,) = [r for r in receiver.requests if r.url.path == "/events/inbox"]
    body = request.content.decode()
    Webhook(HOOK_SECRET).verify(body, dict(request.headers))
    alert = json.loads(body)
    assert alert["type"] == "alert.delivery_disabled"
    assert alert["data"]["subject"] == gone
    assert alert["data"]["link"] == f"http://127.0.0.1:8000/ui/integrations/{gone}"
    assert (await store.get("org-a", channel)).status == IntegrationStatus.CONNECTED


async def test_background_without_the_worker_only_installs_alerts(
    db: Database, db_settings: Settings
) -> None:
    app = FastAPI()
    app.state.db, app.state.settings = db, db_settings
    app.state.store = object()
    background = await start_background(app, run_worker=False)
    assert background.worker is None
    assert isinstance(alerts.current(), alerts.Alerts)
    await background.stop()
    assert alerts.current() is None
