"""Recent activity of an integration: ``GET /jobs``, ``GET /third-party/{id}/deliveries``,
and the dashboard panel that shows both, plus the webhook secret shown once in the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from arkyra.config import Settings
from arkyra.db.session import Database
from arkyra.delivery.queue import Outbox
from arkyra.providers.automation._hooks import AttemptResult, Outcome
from arkyra.sandbox.state import SandboxState
from tests.api.conftest import API_URL, Vendors, connect_heygen
from tests.api.test_dashboard import csrf_of, sign_in
from tests.api.test_jobs import submit, wait_final
from tests.delivery.conftest import FakeResolver

HOOK_URL = "https://hooks.example.com/events/inbox"


@pytest.fixture
async def api(
    make_app: Callable[..., FastAPI], vendors: Vendors
) -> AsyncIterator[httpx.AsyncClient]:
    """The API without its delivery worker, so the tests settle deliveries by hand."""
    vendors.resolver = FakeResolver()
    async with LifespanManager(make_app(background_work=False)) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as client:
            yield client


async def connect_webhook(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await api.post(
        "/third-party/webhooks", json={"fields": {"url": HOOK_URL}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def one_failed_and_one_queued(db: Database, integration_id: str) -> tuple[str, str]:
    """Two deliveries: the first tried once and answered 503, the second not tried yet."""
    outbox = Outbox(db)
    first = await outbox.enqueue(
        organization_id="org-a", integration_id=integration_id, identifier="webhooks",
        event_type="pipeline.item.completed", data={"item": 1},
    )  # fmt: skip
    (claimed,) = await outbox.claim(10)
    await outbox.record(
        claimed, AttemptResult(Outcome.RETRY, 503, 41.5, error="HTTP 503 from the receiver")
    )
    second = await outbox.enqueue(
        organization_id="org-a", integration_id=integration_id, identifier="webhooks",
        event_type="pipeline.item.completed", data={"item": 2},
    )  # fmt: skip
    return first.id, second.id


# -- GET /jobs ------------------------------------------------------------------------------------


async def test_jobs_are_listed_newest_first_per_integration_and_state(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.02
    integration_id = await connect_heygen(api, auth())
    ids = []
    for _ in range(2):
        response = await submit(api, integration_id, auth())
        ids.append(response.json()["job_id"])
        await wait_final(api, ids[-1], auth())

    listed = await api.get("/jobs", params={"integration_id": integration_id}, headers=auth())
    assert listed.status_code == 200, listed.text
    assert [job["id"] for job in listed.json()] == ids[::-1]
    assert {job["status"] for job in listed.json()} == {"succeeded"}

    one = await api.get("/jobs", params={"limit": 1}, headers=auth(role="member"))
    assert [job["id"] for job in one.json()] == [ids[-1]]
    failed = await api.get("/jobs", params={"status": "failed"}, headers=auth())
    assert failed.json() == []
    other = await api.get("/jobs", headers=auth("org-b"))
    assert other.status_code == 200
    assert other.json() == []


@pytest.mark.parametrize(
    "params", [{"status": "done"}, {"limit": 0}, {"limit": 101}, {"integration_id": ""}]
)
async def test_bad_job_filters_are_refused_with_the_field_named(
    api: httpx.AsyncClient, auth, params: dict[str, object]
) -> None:
    response = await api.get("/jobs", params=params, headers=auth())
    assert response.status_code == 422, response.text
    assert next(iter(params)) in response.text


# -- GET /third-party/{id}/deliveries -------------------------------------------------------------


async def test_delivery_log_shows_status_attempts_last_error_and_latency(
    api: httpx.AsyncClient, auth, db: Database
) -> None:
    integration_id = await connect_webhook(api, auth())
    failed_once, queued = await one_failed_and_one_queued(db, integration_id)

    response = await api.get(f"/third-party/{integration_id}/deliveries", headers=auth())
    assert response.status_code == 200, response.text
    log = {entry["id"]: entry for entry in response.json()}
    assert list(log) == [queued, failed_once]  # newest first
    tried = log[failed_once]
    assert tried["status"] == "pending"
    assert tried["attempts"] == 1
    assert tried["last_status"] == 503
    assert tried["last_error"] == "HTTP 503 from the receiver"
    assert tried["latency_ms"] == pytest.approx(41.5)
    assert tried["next_attempt_at"] is not None
    assert log[queued]["attempts"] == 0
    assert log[queued]["last_status"] is None

    limited = await api.get(
        f"/third-party/{integration_id}/deliveries", params={"limit": 1}, headers=auth()
    )
    assert [entry["id"] for entry in limited.json()] == [queued]
    delivered = await api.get(
        f"/third-party/{integration_id}/deliveries", params={"status": "delivered"},
        headers=auth(role="member"),
    )  # fmt: skip
    assert delivered.status_code == 200
    assert delivered.json() == []


async def test_delivery_log_is_404_across_organizations_and_empty_for_renders(
    api: httpx.AsyncClient, auth, db: Database
) -> None:
    integration_id = await connect_webhook(api, auth())
    await one_failed_and_one_queued(db, integration_id)
    other = await api.get(f"/third-party/{integration_id}/deliveries", headers=auth("org-b"))
    assert other.status_code == 404
    assert "hooks.example.com" not in other.text
    heygen = await connect_heygen(api, auth())
    renders = await api.get(f"/third-party/{heygen}/deliveries", headers=auth())
    assert renders.status_code == 200
    assert renders.json() == []
    bad = await api.get(
        f"/third-party/{integration_id}/deliveries", params={"status": "lost"}, headers=auth()
    )
    assert bad.status_code == 422
    assert "status" in bad.text


# -- the dashboard panel ---------------------------------------------------------------------


async def test_integration_panel_lists_recent_jobs_with_their_state(
    api: httpx.AsyncClient, auth, db_settings: Settings, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.02
    integration_id = await connect_heygen(api, auth())
    job_id = (await submit(api, integration_id, auth())).json()["job_id"]
    await wait_final(api, job_id, auth())
    await sign_in(api, db_settings)

    page = await api.get(f"/ui/integrations/{integration_id}")
    assert page.status_code == 200
    jobs = page.text.split('id="recent-jobs"', 1)[1].split("</table>", 1)[0]
    assert f'data-job="{job_id}"' in jobs
    assert "succeeded" in jobs
    assert "100%" in jobs
    assert 'rel="noreferrer noopener">result</a>' in jobs
    assert "Recent deliveries" not in page.text  # a render provider takes no deliveries
    browse = await api.get(f"/ui/integrations/{integration_id}/functions/voices")
    assert f'data-job="{job_id}"' in browse.text  # the same panel under a list


async def test_webhook_panel_lists_deliveries_with_attempts_and_errors(
    api: httpx.AsyncClient, auth, db: Database, db_settings: Settings
) -> None:
    integration_id = await connect_webhook(api, auth())
    failed_once, queued = await one_failed_and_one_queued(db, integration_id)
    await sign_in(api, db_settings, role="member")

    page = (await api.get(f"/ui/integrations/{integration_id}")).text
    table = page.split('id="recent-deliveries"', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tr data-delivery=")[1:]
    assert [row.split('"')[1] for row in rows] == [queued, failed_once]
    assert "503" in rows[1]
    assert "HTTP 503 from the receiver" in rows[1]
    assert "42 ms" in rows[1]
    assert "next try" in rows[1]
    assert "No jobs yet" in page


async def test_dashboard_shows_a_generated_webhook_secret_once(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await api.post(
        "/ui/providers/webhooks/connect", data={"csrf_token": csrf, "url": HOOK_URL}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    secret = response.text.split('id="signing-secret"', 1)[1].split('value="', 1)[1].split('"')[0]
    assert secret.startswith("whsec_")
    assert "shown only this once" in response.text

    home = await api.get("/?connected=webhooks")
    assert "Webhooks is connected" in home.text
    assert secret not in home.text
    integration_id = home.text.split('href="/ui/integrations/', 1)[1].split('"', 1)[0]
    panel = await api.get(f"/ui/integrations/{integration_id}")
    assert secret not in panel.text

    again = await api.post(  # reconnecting with the secret: nothing generated, nothing shown
        "/ui/providers/webhooks/connect",
        data={"csrf_token": csrf_of(home.text), "url": HOOK_URL, "secret": secret},
    )
    assert again.status_code == 303
    assert again.headers["location"] == "/?connected=webhooks"
