"""``POST /third-party/{id}/submit`` and ``GET /jobs/{id}``: the lifecycle, failures, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from arkyra.api.jobs import JobRunner, describe_error
from arkyra.db.models import Job, JobState, Organization, utcnow
from arkyra.db.session import Database
from arkyra.errors import InvalidCredentials
from arkyra.sandbox.state import SandboxState
from tests.api.conftest import API_URL, HEYGEN_KEY, Vendors, connect_heygen

VIDEO = {
    "script": "Hello from the API tests",
    "avatar_id": "Abigail_expressive_2024112501",
    "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54",
}


async def wait_final(api: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> dict:
    for _ in range(400):
        response = await api.get(f"/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish: {body}")


async def submit(api: httpx.AsyncClient, integration_id: str, headers, **body) -> httpx.Response:
    return await api.post(
        f"/third-party/{integration_id}/submit", json={"input": VIDEO, **body}, headers=headers
    )


async def test_submit_runs_the_render_to_the_end(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.05
    integration_id = await connect_heygen(api, auth())
    response = await submit(api, integration_id, auth(role="member"))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = await wait_final(api, job_id, auth(role="member"))
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0
    assert job["integration_id"] == integration_id
    assert job["identifier"] == "heygen"
    assert job["result"]["status"] == "succeeded"
    assert job["result"]["result_url"]
    assert job["error"] is None
    assert job["finished_at"]
    assert sandbox_state.paid_calls["heygen"] == 1
    assert HEYGEN_KEY not in str(job)


async def test_submit_without_waiting_returns_the_queued_vendor_job(
    api: httpx.AsyncClient, auth
) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await submit(api, integration_id, auth(), wait=False)
    job = await wait_final(api, response.json()["job_id"], auth())
    assert job["status"] == "succeeded"
    assert job["result"]["status"] == "queued"
    assert job["result"]["id"]


async def test_a_failed_render_is_reported_with_its_reason(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.02
    integration_id = await connect_heygen(api, auth())
    response = await submit(
        api, integration_id, auth(), input={**VIDEO, "script": "please [fail] now"}
    )
    job = await wait_final(api, response.json()["job_id"], auth())
    assert job["status"] == "failed"
    assert job["error"]["error"] == "JobFailed"
    assert job["error"]["provider"] == "heygen"
    assert job["result"] is None


async def test_invalid_submit_input_is_422_and_starts_nothing(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await api.post(
        f"/third-party/{integration_id}/submit",
        json={"input": {"script": "hi", "voice_id": "v"}},
        headers=auth(),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"]
    extra = await api.post(
        f"/third-party/{integration_id}/submit", json={"input": VIDEO, "x": 1}, headers=auth()
    )
    assert extra.status_code == 422
    assert sandbox_state.paid_calls["heygen"] == 0


async def test_submit_on_unknown_integration_is_404(api: httpx.AsyncClient, auth) -> None:
    response = await submit(api, "no-such-integration", auth())
    assert response.status_code == 404


async def test_unknown_job_is_404(api: httpx.AsyncClient, auth) -> None:
    response = await api.get("/jobs/00000000-0000-0000-0000-000000000000", headers=auth())
    assert response.status_code == 404


async def test_refused_credentials_during_a_job_mark_needs_reconnect(
    api: httpx.AsyncClient, auth, vendors: Vendors
) -> None:
    integration_id = await connect_heygen(api, auth())

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"data": None, "error": {"code": 40009, "message": "no"}})

    vendors.override = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    try:
        response = await submit(api, integration_id, auth())
        job = await wait_final(api, response.json()["job_id"], auth())
    finally:
        await vendors.override.aclose()
        vendors.override = None
    assert job["status"] == "failed"
    assert job["error"]["error"] == "InvalidCredentials"
    listed = (await api.get("/third-party", headers=auth())).json()
    assert listed[0]["status"] == "needs_reconnect"


async def test_a_restart_reports_running_jobs_as_interrupted(
    make_app: Callable[..., FastAPI], auth, db: Database, sandbox_state: SandboxState
) -> None:
    """A job whose process died (stale heartbeat) is 'interrupted', not lost or running."""
    sandbox_state.faults_for("heygen").job_seconds = 60  # would run for a minute
    app = make_app(job_stale_after_seconds=0.2)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            integration_id = await connect_heygen(api, auth())
            job_id = (await submit(api, integration_id, auth())).json()["job_id"]
            await asyncio.sleep(0.05)
            running = (await api.get(f"/jobs/{job_id}", headers=auth())).json()
            assert running["status"] in ("queued", "running")
    # Shutting down cancels the task and records it; now simulate a crash instead: a row left
    # "running" by a process that is gone.
    async with db.transaction() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        assert row.status == JobState.INTERRUPTED
        row.status = JobState.RUNNING.value
        row.finished_at = None
        row.heartbeat_at = utcnow() - timedelta(minutes=5)
    restarted = make_app(job_stale_after_seconds=0.2)
    async with LifespanManager(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            job = (await api.get(f"/jobs/{job_id}", headers=auth())).json()
    assert job["status"] == "interrupted"
    assert job["error"]["error"] == "interrupted"


async def test_a_stale_job_is_reported_interrupted_on_read(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Organization(id="org-stale", name="org-stale"))
        await session.flush()
        session.add(
            Job(
                id="stale-job",
                organization_id="org-stale",
                integration_id="i",
                identifier="heygen",
                status=JobState.RUNNING.value,
                heartbeat_at=utcnow() - timedelta(minutes=10),
            )
        )
    runner = JobRunner(db, stale_after_seconds=60)
    view = await runner.get("org-stale", "stale-job")
    assert view.status == "interrupted"
    async with db.sessions() as session:
        stored = await session.scalar(select(Job).where(Job.id == "stale-job"))
        assert stored is not None
        assert stored.status == "interrupted"


async def test_a_live_job_is_not_interrupted_by_a_second_worker(db: Database) -> None:
    first = JobRunner(db, stale_after_seconds=0.3, heartbeat_seconds=0.05)
    await first.start()
    async with db.transaction() as session:
        session.add(Organization(id="org-live", name="org-live"))
    release = asyncio.Event()

    async def work(progress) -> dict:
        await progress(0.5)
        await release.wait()
        return {"done": True}

    job_id = await first.submit(
        organization_id="org-live", integration_id="i", identifier="heygen", work=work
    )
    await asyncio.sleep(0.5)  # longer than stale_after: only the heartbeat keeps it alive
    second = JobRunner(db, stale_after_seconds=0.3)
    assert await second.interrupt_stale() == 0
    assert (await second.get("org-live", job_id)).status == "running"
    assert (await second.get("org-live", job_id)).progress == 0.5
    release.set()
    await first.wait(job_id)
    done = await second.get("org-live", job_id)
    assert done.status == "succeeded"
    assert done.result == {"done": True}
    await first.close()


def test_job_errors_never_carry_the_secret() -> None:
    secret = "hg_job_secret_value_123456"
    error = InvalidCredentials(f"key {secret} refused", provider="heygen", status=401)
    described = describe_error(error, [secret])
    assert secret not in str(described)
    assert described["error"] == "InvalidCredentials"
    assert describe_error(RuntimeError(secret))["message"] == (
        "the job failed with an internal error"
    )
