"""``/healthz``, ``/readyz`` (each dependency reported) and ``/metrics`` (per route template)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from arkyra.api.app import discover_routers
from arkyra.config import Settings
from tests.api.conftest import API_URL, connect_heygen


async def serve(app: FastAPI, path: str) -> httpx.Response:
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            return await api.get(path)


async def test_healthz(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_reports_the_database(
    api: httpx.AsyncClient, db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arkyra.api.routes.health.prefect_api_url", lambda: None)
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["database"]["detail"] in ("sqlite", "postgresql")
    assert set(checks) == {"database"}


async def test_readyz_reports_a_broken_redis(
    make_app: Callable[..., FastAPI], db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arkyra.api.routes.health.prefect_api_url", lambda: None)
    broken = db_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    response = await serve(make_app(broken), "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "127.0.0.1:1" not in response.text  # the error kind, not connection details


async def test_readyz_checks_a_working_redis(
    make_app: Callable[..., FastAPI],
    db_settings: Settings,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("arkyra.api.routes.health.prefect_api_url", lambda: None)
    configured = db_settings.model_copy(update={"redis_url": redis_url})
    response = await serve(make_app(configured), "/readyz")
    assert response.status_code == 200, response.text
    assert {c["name"] for c in response.json()["checks"]} == {"database", "redis"}


async def test_readyz_checks_prefect_when_configured(
    api: httpx.AsyncClient, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url  # the test harness points Prefect at its temporary server
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["prefect"]["ok"] is True
    monkeypatch.setattr(
        "arkyra.api.routes.health.prefect_api_url", lambda: "http://127.0.0.1:1/api"
    )
    down = await api.get("/readyz")
    assert down.status_code == 503
    assert {c["name"]: c["ok"] for c in down.json()["checks"]}["prefect"] is False


async def test_metrics_are_labelled_by_route_template(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    await api.post(f"/third-party/function/{integration_id}/voices", json={}, headers=auth())
    await api.get("/no/such/path/abc123")
    text = (await api.get("/metrics")).text
    assert 'route="/third-party/function/{integration_id}/{name}"' in text
    assert 'route="/third-party/{identifier}"' in text
    assert "arkyra_http_request_duration_seconds_bucket" in text
    assert 'route="<unmatched>"' in text
    assert integration_id not in text
    assert "abc123" not in text
    assert "arkyra_function_cache_lookups_total" in text


async def test_request_ids_are_kept_when_safe(api: httpx.AsyncClient) -> None:
    kept = await api.get("/healthz", headers={"x-request-id": "trace-1234abcd"})
    assert kept.headers["x-request-id"] == "trace-1234abcd"
    unsafe = await api.get("/healthz", headers={"x-request-id": "bad id\nwith newline"})
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


async def test_unknown_routes_and_methods_use_the_error_shape(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong_verb = await api.put("/healthz")
    assert wrong_verb.status_code == 405


def test_every_router_module_is_included() -> None:
    routers = discover_routers()
    paths = {route.path for router in routers for route in router.routes}  # type: ignore[attr-defined]
    assert {"/healthz", "/readyz", "/metrics", "/jobs/{job_id}", "/third-party/list"} <= paths


async def test_openapi_documents_schemas_with_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("ConnectRequest", "ConnectResponse", "IntegrationResponse", "JobResponse"):
        assert schemas[name].get("examples"), name
    assert "/third-party/{integration_id}/submit" in spec["paths"]


async def test_create_app_wires_itself_from_settings(
    db_settings: Settings, auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test doubles: database, store, limiter, cache and client all come from settings."""
    from arkyra.api.app import create_app
    from arkyra.api.cache import MemoryFunctionCache
    from arkyra.credentials import CredentialStore

    monkeypatch.setattr("arkyra.api.routes.health.prefect_api_url", lambda: None)
    app = create_app(db_settings)
    async with LifespanManager(app):
        assert isinstance(app.state.store, CredentialStore)
        assert isinstance(app.state.cache, MemoryFunctionCache)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            assert (await api.get("/readyz")).status_code == 200
            listed = await api.get("/third-party", headers=auth("org-wired"))
            assert listed.status_code == 200
            assert listed.json() == []
        client = app.state.http_client
    assert client.is_closed


async def test_metrics_need_the_scrape_token_when_one_is_set(
    make_app: Callable[..., FastAPI], db_settings: Settings
) -> None:
    token = "scrape-token-for-tests-0123456789"
    app = make_app(db_settings.model_copy(update={"metrics_token": SecretStr(token)}))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            missing = await api.get("/metrics")
            wrong = await api.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
            basic = await api.get("/metrics", headers={"Authorization": f"Basic {token}"})
            right = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert "ARKYRA_METRICS_TOKEN" in refused.json()["message"]
        assert token not in refused.text
    assert right.status_code == 200
    assert "arkyra_http_request_duration_seconds" in right.text
