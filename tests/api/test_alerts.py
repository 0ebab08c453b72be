"""Alerts: queued to the organization's connected webhooks and apprise integrations, signed
(webhooks), de-duplicated per window, and raised by the store (needs reconnect), the breaker
(opened) and the pipeline (failed)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from arkyra import alerts
from arkyra.alerts import Alert, AlertKind, Alerts, Channel
from arkyra.config import Settings
from arkyra.credentials.store import CredentialStore
from arkyra.db.models import Delivery, IntegrationStatus, Organization, ThirdParty
from arkyra.db.session import Database
from arkyra.delivery.queue import Outbox
from arkyra.errors import Transient
from arkyra.flows.content import content_pipeline
from arkyra.providers import get_provider
from arkyra.providers.automation._hooks import OutgoingMessage
from arkyra.router.breaker import BreakerPolicy, CircuitBreaker
from arkyra.security.vault import Vault

HOOK_URL = "https://hooks.example.com/alerts"
HOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorded:
    """Stands in for the installed :class:`Alerts`: records every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        async def record(*args: str) -> list[str]:
            self.calls.append((method, args))
            return ["recorded"]

        return record


class MemoryMirror:
    async def save(self, name: str, block: Any) -> str:
        return str(uuid.uuid4())

    async def delete(self, name: str, identifier: str) -> bool:
        return True

    async def list_blocks(self) -> list[Any]:
        return []


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spy = Recorded()
    alerts.install(spy)  # type: ignore[arg-type]
    yield spy
    alerts.install(None)


async def add_integration(
    db: Database,
    store: CredentialStore | None,
    organization_id: str,
    identifier: str = "webhooks",
    status: str = IntegrationStatus.CONNECTED,
    credentials: dict[str, str] | None = None,
) -> str:
    """A ``third_party`` row written directly (sealed by ``store`` when given)."""
    row_id = str(uuid.uuid4())
    blob, key_id = b"", ""
    if store is not None:
        from arkyra.credentials.store import _encode, seal_context

        values = credentials or {"url": HOOK_URL, "secret": HOOK_SECRET}
        sealed = store.vault.encrypt(_encode(values), context=seal_context(row_id))
        blob, key_id = sealed.blob, sealed.key_id
    async with db.transaction() as session:
        if await session.get(Organization, organization_id) is None:
            session.add(Organization(id=organization_id, name=organization_id))
            await session.flush()
        session.add(
            ThirdParty(
                id=row_id,
                organization_id=organization_id,
                identifier=identifier,
                name=f"{identifier} {row_id[:6]}",
                internal_id=row_id,
                api_key=blob,
                key_id=key_id,
                block_name=f"b-{row_id}",
                status=status,
            )
        )
    return row_id


async def deliveries(db: Database) -> list[Delivery]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.created_at)))


def make_store(db: Database, settings: Settings) -> CredentialStore:
    return CredentialStore(db, Vault.from_settings(settings), MemoryMirror(), settings=settings)  # type: ignore[arg-type]


# -- sending ------------------------------------------------------------------------------------


async def test_an_alert_goes_to_every_connected_webhook_of_that_org_only(db: Database) -> None:
    first = await add_integration(db, None, "org-a")
    second = await add_integration(db, None, "org-a")
    await add_integration(db, None, "org-a", status=IntegrationStatus.NEEDS_RECONNECT)
    await add_integration(db, None, "org-a", identifier="zapier")
    await add_integration(db, None, "org-b")
    sender = Alerts(db)

    ids = await sender.delivery_disabled("org-a", "int-9", "410 Gone from the endpoint")

    rows = await deliveries(db)
    assert sorted(r.id for r in rows) == sorted(ids)
    assert len(ids) == 2
    assert {r.integration_id for r in rows} == {first, second}
    assert {r.event_type for r in rows} == {"alert.delivery_disabled"}
    body = json.loads(rows[0].payload)
    assert body["type"] == "alert.delivery_disabled"
    assert body["data"]["reason"] == "410 Gone from the endpoint"
    assert body["data"]["link"] == "/ui/integrations/int-9"
    assert body["data"]["subject"] == "int-9"
    assert body["data"]["organization_id"] == "org-a"


async def test_apprise_integrations_are_channels_too_each_under_its_identifier(
    db: Database,
) -> None:
    hook = await add_integration(db, None, "org-a")
    notify = await add_integration(db, None, "org-a", identifier="apprise")
    await add_integration(
        db, None, "org-a", identifier="apprise", status=IntegrationStatus.NEEDS_RECONNECT
    )
    await add_integration(db, None, "org-b", identifier="apprise")
    sender = Alerts(db)

    assert sorted(await sender.channels("org-a")) == sorted(
        [Channel(hook, "webhooks"), Channel(notify, "apprise")]
    )
    ids = await sender.pipeline_failed("org-a", "run-1", "boom")

    rows = await deliveries(db)
    assert sorted(r.id for r in rows) == sorted(ids)
    assert {(r.integration_id, r.identifier) for r in rows} == {
        (hook, "webhooks"),
        (notify, "apprise"),
    }
    assert len({r.idempotency_key for r in rows}) == 1  # one alert, once per channel
    assert all(json.loads(r.payload)["data"]["reason"] == "boom" for r in rows)
    assert await sender.pipeline_failed("org-a", "run-1", "boom") == []  # same window


async def test_an_org_without_webhooks_gets_nothing_and_nothing_fails(db: Database) -> None:
    await add_integration(db, None, "org-b")
    assert await Alerts(db).pipeline_failed("org-a", "run-1", "boom") == []
    assert await deliveries(db) == []


async def test_the_same_alert_is_sent_once_per_window(db: Database) -> None:
    await add_integration(db, None, "org-a")
    clock, wall = Clock(), Clock()
    sender = Alerts(db, window_seconds=600, clock=clock, wall_clock=wall)

    assert len(await sender.pipeline_failed("org-a", "run-1", "boom")) == 1
    clock.now += 599
    wall.now += 599
    assert await sender.pipeline_failed("org-a", "run-1", "boom again") == []
    assert len(await sender.pipeline_failed("org-a", "run-2", "other run")) == 1
    assert len(await sender.integration_needs_reconnect("org-a", "run-1", "x")) == 1  # other kind
    clock.now += 2
    wall.now += 2
    assert len(await sender.pipeline_failed("org-a", "run-1", "still failing")) == 1
    assert len(await deliveries(db)) == 4


async def test_another_process_in_the_same_window_collapses_in_the_outbox(db: Database) -> None:
    await add_integration(db, None, "org-a")
    wall = Clock()
    one, two = Alerts(db, wall_clock=wall), Alerts(db, wall_clock=wall)
    first = await one.breaker_opened("openai", "x")  # no operator org: nobody is told
    assert first == []
    a = await one.pipeline_failed("org-a", "run-1", "boom")
    b = await two.pipeline_failed("org-a", "run-1", "boom")
    assert a == b
    assert len(await deliveries(db)) == 1


async def test_a_queued_alert_is_signed_as_usual(db: Database, db_settings: Settings) -> None:
    store = make_store(db, db_settings)
    await add_integration(db, store, "org-a")
    await Alerts(db).integration_needs_reconnect("org-a", "int-1", "401 from HeyGen")

    (claimed,) = await Outbox(db).claim(10)
    _, credentials = await store.credentials_for_use(
        claimed.organization_id, claimed.integration_id
    )
    provider = get_provider("webhooks", settings=db_settings)
    message = OutgoingMessage(claimed.id, claimed.event_type, claimed.payload)
    now = int(time.time())
    prepared = provider.prepare_delivery(credentials, message, now)  # type: ignore[attr-defined]
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    assert headers["webhook-id"] == claimed.id
    Webhook(HOOK_SECRET).verify(message.body, headers)  # raises when the signature is wrong
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(message.body, headers)
    assert json.loads(message.body)["data"]["link"] == "/ui/integrations/int-1"


async def test_module_hooks_are_a_no_op_without_a_sender_and_never_raise(db: Database) -> None:
    alerts.install(None)
    assert await alerts.pipeline_failed("org-a", "run-1", "boom") == []
    await db.dispose()
    broken = Alerts(Database("sqlite+aiosqlite:////nonexistent/dir/x.db"))
    assert await alerts.delivery_disabled("org-a", "i", "gone", alerts=broken) == []


def test_reasons_are_clipped_and_single_line() -> None:
    alert = Alert("o", AlertKind.PIPELINE_FAILED, "r", alerts._clip("a\n\nb " + "x" * 900), "/")
    assert alert.reason.startswith("a b x")
    assert len(alert.reason) == alerts.MAX_REASON_CHARS


def test_operator_organizations_come_from_an_optional_setting() -> None:
    assert alerts.operator_organizations(SimpleNamespace()) == ()
    assert alerts.operator_organizations(SimpleNamespace(alerts_operator_orgs="ops, b,")) == (
        "ops",
        "b",
    )


async def test_breaker_alerts_go_to_the_operator_organizations(db: Database) -> None:
    ops = await add_integration(db, None, "ops")
    await add_integration(db, None, "org-a")
    ids = await Alerts(db, operator_organizations=["ops"]).breaker_opened("openai", "5 failures")
    (row,) = await deliveries(db)
    assert ids == [row.id]
    assert row.integration_id == ops
    assert json.loads(row.payload)["data"]["link"] == "/ui/ai"


# -- where the events happen --------------------------------------------------------------------


async def test_store_mark_alerts_when_an_integration_starts_needing_reconnect(
    db: Database, db_settings: Settings, recorded: Recorded
) -> None:
    store = make_store(db, db_settings)
    integration = await add_integration(db, store, "org-a", identifier="heygen")

    await store.mark(integration, IntegrationStatus.ERROR, "500s")
    assert recorded.calls == []
    await store.mark(integration, IntegrationStatus.NEEDS_RECONNECT, "401 from the vendor")
    await store.mark(integration, IntegrationStatus.NEEDS_RECONNECT, "401 again")
    assert recorded.calls == [
        ("integration_needs_reconnect", ("org-a", integration, "401 from the vendor"))
    ]


async def test_breaker_alerts_once_when_it_opens(recorded: Recorded) -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2, cooldown_seconds=5), clock=clock)
    await breaker.record_outcome("openai", Transient("503"))
    assert recorded.calls == []
    await breaker.record_outcome("openai", Transient("503"))
    await breaker.record("openai", ok=False)  # already open: no second alert
    assert recorded.calls == [
        ("breaker_opened", ("openai", "circuit breaker opened (last error: Transient)"))
    ]
    clock.now += 6
    await breaker.allow("openai")  # the half-open probe ...
    await breaker.record("openai", ok=False)  # ... fails: open again, a new alert
    assert len(recorded.calls) == 2


async def test_the_pipeline_failure_hook_alerts_the_runs_organization(
    recorded: Recorded,
) -> None:
    assert alerts.pipeline_failure_hook in content_pipeline.on_failure_hooks
    run = SimpleNamespace(id="run-7", parameters={"organization_id": "org-a"})
    await alerts.pipeline_failure_hook(None, run, SimpleNamespace(message="all 3 items failed"))
    await alerts.pipeline_failure_hook(None, SimpleNamespace(id="x", parameters={}), None)
    assert recorded.calls == [("pipeline_failed", ("org-a", "run-7", "all 3 items failed"))]


async def test_in_a_flow_process_the_hook_builds_a_sender_from_the_runtime(
    db: Database, db_settings: Settings
) -> None:
    from arkyra.pipelines.runtime import PipelineRuntime, use_runtime

    alerts.install(None)
    channel = await add_integration(db, None, "org-a")
    run = SimpleNamespace(id="run-9", parameters={"organization_id": "org-a"})
    settings = db_settings.model_copy(update={"public_url": "https://arkyra.example.com/ops/"})
    with use_runtime(PipelineRuntime(settings=settings)):
        await alerts.pipeline_failure_hook(None, run, SimpleNamespace(message="boom"))
    (row,) = await deliveries(db)
    assert row.integration_id == channel
    assert row.event_type == "alert.pipeline_failed"
    # a full URL from the settings, so the link opens from a chat message or an e-mail
    assert json.loads(row.payload)["data"]["link"] == "https://arkyra.example.com/ops/ui/pipelines"
