"""``/healthz`` (the process is alive) and ``/readyz`` (each dependency, reported one by one).

Readiness checks the database always, Redis when ``ARKYRA_REDIS_URL`` is set and the Prefect
API when ``PREFECT_API_URL`` is configured; any failure answers 503 with every result.
"""

from __future__ import annotations

import asyncio
import os

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from arkyra.api.deps import DbDep, SettingsDep
from arkyra.api.logging import get_logger
from arkyra.api.schemas import CheckResult, HealthResponse, ReadinessResponse
from arkyra.db.session import Database

log = get_logger("arkyra.api.health")

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """Always ``ok`` while the process serves requests."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    summary="Readiness",
    responses={503: {"model": ReadinessResponse, "description": "A dependency is down."}},
)
async def readyz(settings: SettingsDep, db: DbDep) -> JSONResponse:
    """The database, Redis (when configured) and the Prefect API (when configured)."""
    checks = [await _check("database", _database(db))]
    if settings.redis_url:
        checks.append(await _check("redis", _redis(settings.redis_url)))
    prefect_url = prefect_api_url()
    if prefect_url:
        checks.append(await _check("prefect", _prefect(prefect_url)))
    ready = all(check.ok for check in checks)
    body = ReadinessResponse(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


def prefect_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or Prefect's own settings; ``None`` if unset."""
    value = os.environ.get("PREFECT_API_URL")
    if not value:
        try:
            from prefect.settings import PREFECT_API_URL

            value = PREFECT_API_URL.value()
        except Exception:
            value = None
    return value.rstrip("/") if value else None


async def _check(name: str, probe: asyncio.Future | object) -> CheckResult:
    try:
        detail = await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except TimeoutError:
        return CheckResult(name=name, ok=False, detail="timed out")
    except Exception as exc:
        log.warning("readiness check %s failed: %s", name, type(exc).__name__)
        return CheckResult(name=name, ok=False, detail=type(exc).__name__)
    return CheckResult(name=name, ok=True, detail=str(detail or ""))


async def _database(db: Database) -> str:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return db.dialect


async def _redis(url: str) -> str:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return "ping"


async def _prefect(url: str) -> str:
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as client:
        response = await client.get(f"{url}/health")
    response.raise_for_status()
    return f"HTTP {response.status_code}"
