"""Two organizations, every route and verb: nothing crosses the boundary.

Organization B (even as admin) sees A's integrations and jobs as missing (404): it cannot read,
call, submit to, delete or overwrite them, and A's state is exactly as before afterwards.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from arkyra.sandbox.state import SandboxState
from tests.api.conftest import HEYGEN_KEY, connect_heygen
from tests.api.test_jobs import VIDEO, wait_final

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def tenant_paths(app: FastAPI) -> list[str]:
    """Every documented path under /third-party and /jobs (this module's routers)."""
    paths = app.openapi()["paths"]
    found = [p for p in paths if p.startswith(("/third-party", "/jobs"))]
    assert len(found) >= 6, found
    return found


def body_for(path: str) -> dict:
    if path.endswith("/submit"):
        return {"input": VIDEO}
    if path == "/third-party/{identifier}":
        return {"fields": {"api_key": HEYGEN_KEY}}
    return {}


async def test_no_reads_writes_or_deletes_across_organizations(
    app: FastAPI, api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("heygen").job_seconds = 0.02
    a_admin, b_admin, b_member = auth("org-a"), auth("org-b"), auth("org-b", "member")
    a_integration = await connect_heygen(api, a_admin)
    warm = await api.post(f"/third-party/function/{a_integration}/voices", json={}, headers=a_admin)
    assert warm.status_code == 200
    a_job = (
        await api.post(
            f"/third-party/{a_integration}/submit", json={"input": VIDEO}, headers=a_admin
        )
    ).json()["job_id"]
    a_job_view = await wait_final(api, a_job, a_admin)
    a_list_before = (await api.get("/third-party", headers=a_admin)).json()
    calls_before = sum(sandbox_state.calls.values())
    paid_before = sandbox_state.paid_calls["heygen"]

    values = {
        "identifier": "heygen",
        "integration_id": a_integration,
        "job_id": a_job,
        "name": "voices",
    }
    b_connected: list[str] = []
    for path in tenant_paths(app):
        url = path.format(**values)
        for verb in VERBS:
            for headers in (b_admin, b_member):
                response = await api.request(verb, url, json=body_for(path), headers=headers)
                status = response.status_code
                where = f"{verb} {path} as {(headers is b_admin and 'admin') or 'member'}"
                if "{integration_id}" in path or "{job_id}" in path:
                    assert status in (404, 405) or (status == 403 and headers is b_member), where
                elif path == "/third-party/{identifier}" and verb == "POST" and status == 200:
                    b_connected.append(response.json()["id"])  # B's own integration
                else:
                    assert status in (200, 403, 404, 405), where
                if status == 200 and verb == "GET" and path == "/third-party":
                    assert a_integration not in response.text, where
                assert a_job_view["result"]["id"] not in response.text, where

    # B's connect of the very same HeyGen account made B's own integration, not A's.
    assert b_connected
    assert a_integration not in b_connected
    b_list = (await api.get("/third-party", headers=b_admin)).json()
    assert [i["id"] for i in b_list] == b_connected[:1]

    # A is untouched: same integrations, still connected, cache and job intact.
    await asyncio.sleep(0)
    assert (await api.get("/third-party", headers=a_admin)).json() == a_list_before
    cached = await api.post(
        f"/third-party/function/{a_integration}/voices", json={}, headers=a_admin
    )
    assert cached.headers["x-arkyra-cache"] == "hit"
    assert (await api.get(f"/jobs/{a_job}", headers=a_admin)).json() == a_job_view
    # B's attempts on A's objects reached no vendor: only B's own connect calls did.
    assert sandbox_state.paid_calls["heygen"] == paid_before
    b_connect_calls = sum(sandbox_state.calls.values()) - calls_before
    assert b_connect_calls == len(b_connected)  # one /v1/user/me per successful connect


async def test_b_cannot_see_a_job_by_guessing_and_a_can(api: httpx.AsyncClient, auth) -> None:
    a_integration = await connect_heygen(api, auth("org-a"))
    job_id = (
        await api.post(
            f"/third-party/{a_integration}/submit",
            json={"input": VIDEO, "wait": False},
            headers=auth("org-a", "member"),
        )
    ).json()["job_id"]
    assert (await api.get(f"/jobs/{job_id}", headers=auth("org-b"))).status_code == 404
    assert (await api.get(f"/jobs/{job_id}", headers=auth("org-a", "member"))).status_code == 200
    not_found_b = await api.get(f"/jobs/{job_id}", headers=auth("org-b"))
    not_found_random = await api.get("/jobs/not-a-job", headers=auth("org-b"))
    assert not_found_b.json()["error"] == not_found_random.json()["error"] == "not_found"


async def test_routes_naming_an_organization_refuse_another_one(
    app: FastAPI, api: httpx.AsyncClient, auth
) -> None:
    """Any route with ``{org_id}`` in its path (the AI router's quota and usage pages): B
    naming A gets nothing, whatever the verb and role."""
    await connect_heygen(api, auth("org-a"))  # A exists
    paths = [p for p in app.openapi()["paths"] if "{org_id}" in p]
    if not paths:
        pytest.skip("no route names an organization in its path")
    for path in paths:
        url = path.replace("{org_id}", "org-a")
        for verb in VERBS:
            for headers in (auth("org-b"), auth("org-b", "member")):
                response = await api.request(verb, url, json={}, headers=headers)
                assert response.status_code in (403, 404, 405, 422), f"{verb} {path}"
