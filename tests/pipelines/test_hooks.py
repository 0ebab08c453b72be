"""POST /hooks/{source}: a signed webhook starts a deployment run; a bad signature starts none."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from standardwebhooks.webhooks import Webhook

from arkyra.api.routes.hooks import router
from arkyra.flows.content import content_pipeline
from arkyra.flows.serve import hook_trigger
from arkyra.pipelines.hooks import (
    InvalidSignature,
    MemoryDeliveryLog,
    StaticHookSecrets,
    is_notion_handshake,
    sign_notion,
    verify,
)
from arkyra.pipelines.models import ContentSource, Integration

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOTION_TOKEN = "secret_notion_verification_token"


def signed(body: bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def hooks_app() -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.hook_secrets = StaticHookSecrets({"cms": SECRET, "notion": NOTION_TOKEN})
    app.state.hook_delivery_log = MemoryDeliveryLog()
    return app


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hooks_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


# -- verification, without Prefect ---------------------------------------------------------------


def test_standard_webhooks_signature_is_verified() -> None:
    body = json.dumps({"type": "page.updated", "data": {"id": "p-1"}}).encode()
    hook = verify("cms", SECRET, signed(body, "msg_1"), body)
    assert (hook.delivery_id, hook.type, hook.entity_id) == ("msg_1", "page.updated", "p-1")
    with pytest.raises(InvalidSignature):
        verify("cms", SECRET, signed(body + b" ", "msg_1"), body)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(InvalidSignature):
        verify("cms", SECRET, signed(body, "msg_1", secret=other), body)
    stale = signed(body, "msg_1") | {"webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(InvalidSignature):
        verify("cms", SECRET, stale, body)


def test_notion_signature_and_handshake() -> None:
    body = json.dumps({"id": "evt-1", "type": "page.content_updated",
                       "entity": {"id": "page-9", "type": "page"}}).encode()  # fmt: skip
    hook = verify("notion", NOTION_TOKEN, {"X-Notion-Signature": sign_notion(NOTION_TOKEN, body)},
                  body)  # fmt: skip
    assert (hook.delivery_id, hook.entity_id) == ("evt-1", "page-9")
    with pytest.raises(InvalidSignature):
        verify("notion", NOTION_TOKEN, {"X-Notion-Signature": sign_notion("wrong", body)}, body)
    handshake = json.dumps({"verification_token": "tok"}).encode()
    assert is_notion_handshake("notion", {}, handshake) == "tok"
    assert is_notion_handshake("cms", {}, handshake) is None


async def test_bad_requests_are_refused_before_anything_is_emitted(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted: list[dict] = []

    def emit(**event: object) -> dict:
        emitted.append(event)
        return event

    monkeypatch.setattr("arkyra.api.routes.hooks.emit_event", emit)
    body = json.dumps({"type": "x", "data": {}}).encode()
    bad = signed(body, "msg_bad") | {"webhook-signature": "v1,AAAA"}

    assert (await api.post("/hooks/cms", content=body, headers=bad)).status_code == 401
    missing = {"content-type": "application/json"}
    assert (await api.post("/hooks/cms", content=body, headers=missing)).status_code == 401
    unknown = await api.post("/hooks/other", content=body, headers=signed(body, "m"))
    assert unknown.status_code == 404
    assert (await api.post("/hooks/BAD..", content=body)).status_code == 404
    assert emitted == []

    first = await api.post("/hooks/cms", content=body, headers=signed(body, "msg_ok"))
    again = await api.post("/hooks/cms", content=body, headers=signed(body, "msg_ok"))
    assert (first.status_code, first.json()["duplicate"]) == (202, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert len(emitted) == 1
    assert emitted[0]["payload"]["delivery_id"] == "msg_ok"
    assert emitted[0]["resource"]["prefect.resource.id"] == "arkyra.hook.cms"


async def test_without_a_prefect_api_the_sender_is_told_to_retry(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arkyra.api.routes.hooks.emit_event", lambda **event: None)
    body = json.dumps({"type": "x", "data": {}}).encode()

    first = await api.post("/hooks/cms", content=body, headers=signed(body, "msg_later"))
    again = await api.post("/hooks/cms", content=body, headers=signed(body, "msg_later"))

    assert (first.status_code, again.status_code) == (503, 503)  # not taken for a duplicate


async def test_notion_handshake_token_is_kept_pending_never_trusted(
    api: httpx.AsyncClient,
) -> None:
    body = json.dumps({"verification_token": "secret_new"}).encode()
    answer = await api.post("/hooks/notion", content=body)
    assert answer.status_code == 200
    secrets = api._transport.app.state.hook_secrets  # type: ignore[attr-defined]
    assert secrets.pending == {"notion": "secret_new"}
    assert secrets.secrets["notion"] == NOTION_TOKEN


# -- the trigger, on the session's Prefect server --------------------------------------------------


async def flow_runs_of(deployment_id: uuid.UUID) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


async def test_a_signed_webhook_starts_a_run_and_a_bad_one_none(
    prefect_server: None, api: httpx.AsyncClient
) -> None:
    source = ContentSource(integration=Integration(identifier="notion", integration_id="i-1"))
    deployment = await content_pipeline.to_deployment(
        name=f"on-cms-{uuid.uuid4().hex[:6]}",
        parameters={"organization_id": "org-hooks", "source": source.model_dump(mode="json")},
        triggers=[hook_trigger("cms")],
    )
    deployment_id = await deployment.apply()
    await asyncio.sleep(1.0)  # the triggers service loads new automations
    body = json.dumps({"type": "page.updated", "data": {"id": "page-42"}}).encode()

    bad = signed(body, "msg_forged") | {
        "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()
    }
    assert (await api.post("/hooks/cms", content=body, headers=bad)).status_code == 401
    good = await api.post("/hooks/cms", content=body, headers=signed(body, "msg_real"))
    assert good.status_code == 202

    runs: list = []
    for _ in range(60):
        runs = await flow_runs_of(deployment_id)
        if runs:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # a run for the forged delivery would have appeared by now
    runs = await flow_runs_of(deployment_id)

    assert len(runs) == 1
    hook = runs[0].parameters["hook"]
    assert hook["delivery_id"] == "msg_real"
    assert hook["entity_id"] == "page-42"
    assert runs[0].parameters["organization_id"] == "org-hooks"


def test_the_api_serves_the_hooks_route(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from arkyra.api.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path))
    assert "/hooks/{source}" in app.openapi()["paths"]
