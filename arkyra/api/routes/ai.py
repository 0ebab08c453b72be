"""The AI router over HTTP: completions, provider health, quotas and usage.

The organization always comes from the token; asking for another organization's quota or usage
answers 404 (no hint that it exists). Responses carry ``x-arkyra-overhead-ms``, the time the
router added on top of the upstream call. An exhausted budget answers 429 naming the budget
(``usd`` or ``tokens``) and when it resets, with ``Retry-After``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from arkyra.api.deps import AdminDep, AILimited, rate_limit
from arkyra.api.errors import json_error
from arkyra.errors import ArkyraError, NotFound
from arkyra.providers.ai._base import CompletionRequest
from arkyra.router.idempotency import IdempotencyIncomplete, IdempotencyInProgress
from arkyra.router.quota import QuotaExceeded, QuotaService
from arkyra.router.service import AllProvidersFailed, RouteInfo, Router
from arkyra.router.usage import usage_summary

router = APIRouter(tags=["ai"])

OVERHEAD_HEADER = "x-arkyra-overhead-ms"
CREDENTIALS_TTL_SECONDS = 30.0


# -- the router and the organization's own keys -------------------------------------------------


async def get_ai_router(request: Request) -> Router:
    """One Router per app, built on first use from the app's settings, database and client.

    The app's lifespan closes it on shutdown so queued usage rows are flushed. It talks to
    the vendors through ``app.state.ai_http_client`` (see :mod:`arkyra.router.transport`).
    ``async`` so FastAPI does not send it to a worker thread on every request."""
    state = request.app.state
    ai = getattr(state, "ai_router", None)
    if ai is None:
        client = getattr(state, "ai_http_client", None) or getattr(state, "http_client", None)
        ai = Router(state.settings, db=state.db, client=client)
        state.ai_router = ai
    return ai


AIRouterDep = Annotated[Router, Depends(get_ai_router)]


class OrganizationKeys:
    """The organization's connected AI keys, decrypted once and cached briefly (hot path)."""

    def __init__(self, ttl_seconds: float = CREDENTIALS_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, dict[str, str]]]] = {}

    async def for_organization(self, request: Request, org: str) -> dict[str, dict[str, str]]:
        cached = self._cache.get(org)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl_seconds:
            return cached[1]
        keys: dict[str, dict[str, str]] = {}
        store = getattr(request.app.state, "store", None)
        if store is not None:
            ai_ids = set((await get_ai_router(request)).chain.identifiers())
            for integration in await store.list(org):
                if integration.identifier in ai_ids and integration.status == "connected":
                    if integration.identifier in keys:
                        continue  # the first connected key of a provider wins
                    try:
                        _, secret = await store.credentials_for_use(org, integration.id)
                    except ArkyraError:  # needs reconnect: fall back to the platform key
                        continue
                    keys[integration.identifier] = secret
        self._cache[org] = (now, keys)
        return keys

    def forget(self, org: str) -> None:
        self._cache.pop(org, None)


def organization_keys(request: Request) -> OrganizationKeys:
    keys = getattr(request.app.state, "ai_org_keys", None)
    if keys is None:
        keys = request.app.state.ai_org_keys = OrganizationKeys()
    return keys


async def credentials_lookup(request: Request, org: str) -> Any:
    """``credentials_for`` for the router: the org's own key for a provider, else None."""
    keys: Mapping[str, dict[str, str]] = await organization_keys(request).for_organization(
        request, org
    )
    return keys.get


class FastJSONResponse(JSONResponse):
    """JSON via orjson (several times faster than ``json.dumps`` for completion bodies)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


# -- errors and headers -----------------------------------------------------------------------


def quota_response(exc: QuotaExceeded) -> JSONResponse:
    seconds = exc.retry_after_seconds()
    return json_error(
        429,
        "quota_exceeded",
        str(exc),
        headers={"Retry-After": str(seconds)},
        budget=exc.budget,
        resets_at=exc.resets_at.isoformat(),
        limit=str(exc.limit),
        used=str(exc.used),
        requested=str(exc.requested),
    )


def all_failed_response(exc: AllProvidersFailed) -> JSONResponse:
    return json_error(
        502,
        "all_providers_failed",
        exc.message,
        attempts=[a.to_dict() for a in exc.attempts],
    )


def in_progress_response(exc: IdempotencyInProgress) -> JSONResponse:
    return json_error(409, "idempotency_in_progress", str(exc), headers={"Retry-After": "1"})


def incomplete_response(exc: IdempotencyIncomplete) -> JSONResponse:
    """422: the key's stream was cut off after it started and was billed; what it produced
    comes back so the client need not pay for it twice, and a new key asks again."""
    completion = exc.outcome.get("completion") or {}
    incomplete = exc.outcome.get("incomplete") or {}
    return json_error(
        422,
        "idempotency_incomplete",
        str(exc),
        errors=exc.errors,
        reason=incomplete.get("reason"),
        partial={
            "content": completion.get("content", ""),
            "model": completion.get("model"),
            "usage": completion.get("usage"),
        },
    )


def route_headers(route: RouteInfo) -> dict[str, str]:
    headers = {
        OVERHEAD_HEADER: f"{route.overhead_ms:.3f}",
        "x-arkyra-provider": route.provider or "",
        "x-arkyra-route-id": route.request_id,
    }
    if route.replayed:
        headers["idempotent-replayed"] = "true"
    return headers


# -- routes -------------------------------------------------------------------------------------


@router.post("/ai/completion")
async def completion(
    body: CompletionRequest,
    request: Request,
    response: Response,
    principal: AILimited,
    ai: AIRouterDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Route one completion across the provider chain (``stream`` is not supported here:
    use POST /v1/chat/completions). ``Idempotency-Key`` replays a stored answer, also one
    first asked for as a stream on /v1/chat/completions with the same request."""
    org = principal.organization_id
    try:
        answer, route = await ai.complete(
            org,
            body.model_copy(update={"stream": False}) if body.stream else body,
            request_id=uuid.uuid4().hex,
            idempotency_key=idempotency_key,
            credentials_for=await credentials_lookup(request, org),
        )
    except QuotaExceeded as exc:
        return quota_response(exc)
    except AllProvidersFailed as exc:
        return all_failed_response(exc)
    except IdempotencyInProgress as exc:
        return in_progress_response(exc)
    except IdempotencyIncomplete as exc:
        return incomplete_response(exc)
    response.headers.update(route_headers(route))
    return {"completion": answer.model_dump(mode="json"), "route": route.to_dict()}


@router.get("/ai/providers")
async def providers(
    principal: AILimited,
    request: Request,
    ai: AIRouterDep,
    probe: Annotated[
        bool, Query(description="Also run each provider's free health check.")
    ] = False,
) -> dict[str, Any]:
    """Every AI provider in the chains: availability, breaker state and recent metrics."""
    lookup = await credentials_lookup(request, principal.organization_id) if probe else None
    return {
        "price_version": ai.prices.version,
        "providers": await ai.provider_status(probe=probe, credentials_for=lookup),
    }


def _own(principal: Any, org_id: str) -> str:
    if org_id != principal.organization_id:
        raise NotFound(f"no organization {org_id!r}")
    return org_id


def _quota(ai: Router) -> QuotaService:
    if ai.quota is None:
        raise NotFound("budgets are not configured")
    return ai.quota


@router.get("/ai/quota/{org_id}")
async def quota(org_id: str, principal: AILimited, ai: AIRouterDep) -> dict[str, Any]:
    """The organization's budget for the current period (limits, spent, reserved)."""
    return await _quota(ai).snapshot(_own(principal, org_id))


class QuotaPolicyBody(BaseModel):
    limit_usd: Decimal | None = Field(default=None, ge=0)
    limit_tokens: int | None = Field(default=None, ge=0)
    period: str = Field(default="month", pattern="^(month|day)$")


@router.put("/ai/quota/{org_id}", dependencies=[Depends(rate_limit("ai"))])
async def set_quota(
    org_id: str, body: QuotaPolicyBody, principal: AdminDep, ai: AIRouterDep
) -> dict[str, Any]:
    """Set the organization's budget (admins only); ``null`` removes a limit."""
    service = _quota(ai)
    org = _own(principal, org_id)
    await service.set_policy(
        org, limit_usd=body.limit_usd, limit_tokens=body.limit_tokens, period=body.period
    )
    return await service.snapshot(org)


@router.get("/ai/usage/{org_id}")
async def usage(
    org_id: str,
    principal: AILimited,
    request: Request,
    ai: AIRouterDep,
    since: Annotated[date | None, Query(description="First day to include (UTC).")] = None,
) -> dict[str, Any]:
    """Attempts, tokens and cost by provider, task type and day."""
    org = _own(principal, org_id)
    if ai.usage is not None:
        await ai.usage.flush()
    start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None
    return await usage_summary(request.app.state.db, org, since=start)
