"""``/third-party``: the catalogue, connect, list, delete, exposed functions and submit.

Every route takes the organization from the token; another organization's integration is
indistinguishable from a missing one (404). Credential values are registered for log
redaction as soon as they arrive and scrubbed from anything sent back.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ValidationError

from arkyra.api import schemas
from arkyra.api.cache import HEADER as CACHE_HEADER
from arkyra.api.cache import FunctionCache, is_list_function
from arkyra.api.deps import (
    AdminDep,
    CacheDep,
    DbDep,
    JobsDep,
    ProviderFactoryDep,
    StoreDep,
    rate_limit,
)
from arkyra.api.errors import ConnectRejected
from arkyra.api.jobs import ProgressCallback, to_jsonable
from arkyra.api.logging import REDACTED, get_logger, remember_secrets
from arkyra.api.metrics import CACHE_LOOKUPS
from arkyra.api.schemas import (
    CatalogueEntry,
    ConnectRequest,
    ErrorResponse,
    FunctionCallRequest,
    FunctionCallResponse,
    IntegrationResponse,
    SubmitRequest,
    SubmitResponse,
)
from arkyra.credentials import CredentialStore
from arkyra.db.models import IntegrationStatus
from arkyra.delivery.queue import MAX_DELIVERY_LOG, delivery_log
from arkyra.errors import InvalidCredentials, InvalidInput, ProviderError, RateLimited, Transient
from arkyra.providers import ThirdPartyProvider, all_providers, catalogue_entry, provider_class
from arkyra.providers.jobs import RenderJob
from arkyra.security.tokens import Principal

log = get_logger("arkyra.api.third_party")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
    404: {"model": ErrorResponse, "description": "No such object in this organization."},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded; see Retry-After."},
}

router = APIRouter(prefix="/third-party", tags=["third-party"], responses=ERRORS)

Limited = Annotated[Principal, Depends(rate_limit())]
IntegrationId = Annotated[str, Path(min_length=1, max_length=64)]


def _secret_values(values: dict[str, Any]) -> list[str]:
    return [v for v in values.values() if isinstance(v, str) and len(v.strip()) >= 6]


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with every credential value replaced, however deeply it is nested."""
    secrets = [s for s in secrets if s and len(s) >= 6]
    if not secrets:
        return value
    if not any(s in json.dumps(value, default=str) for s in secrets):
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value


async def _invalidate(cache: FunctionCache, integration_id: str) -> None:
    try:
        await cache.invalidate(integration_id)
    except Exception as exc:  # the cache is an optimisation; never fail the request on it
        log.warning("cache invalidation failed for %s: %s", integration_id, type(exc).__name__)


async def _mark_needs_reconnect(
    store: CredentialStore, integration_id: str, exc: InvalidCredentials, secrets: list[str]
) -> None:
    reason = scrub(exc.message or "the vendor refused the stored credentials", secrets)
    await store.mark(integration_id, IntegrationStatus.NEEDS_RECONNECT, reason)


# -- catalogue and integrations ---------------------------------------------------------------


@router.get("/list", response_model=list[CatalogueEntry], summary="Providers you can connect")
async def catalogue(_: Limited) -> list[dict[str, Any]]:
    """Every provider: identifier, title, description, category, fields with kinds, deprecated."""
    return [catalogue_entry(cls) for cls in all_providers()]


@router.get(
    "", response_model=list[IntegrationResponse], summary="This organization's integrations"
)
async def list_integrations(principal: Limited, store: StoreDep) -> list[dict[str, Any]]:
    """Integrations with their status: connected, needs_reconnect or error, and last check."""
    return [
        {
            "id": item.id,
            "identifier": item.identifier,
            "name": item.name,
            "status": item.status,
            "status_reason": item.status_reason,
            "last_checked_at": item.last_checked_at,
            "created_at": item.created_at,
        }
        for item in await store.list(principal.organization_id)
    ]


@router.post(
    "/{identifier}",
    response_model=schemas.ConnectResponse,
    response_model_exclude_none=True,
    summary="Connect an account (admin)",
    responses={
        400: {"model": ErrorResponse, "description": "The vendor refused the credentials."},
        403: {"model": ErrorResponse, "description": "Only admins may connect."},
        422: {"model": ErrorResponse, "description": "Missing or invalid fields."},
    },
    dependencies=[Depends(rate_limit("connect"))],
)
async def connect(
    identifier: Annotated[str, Path(min_length=1, max_length=64)],
    body: ConnectRequest,
    principal: AdminDep,
    store: StoreDep,
    cache: CacheDep,
) -> schemas.ConnectResponse:
    """Validate the fields, prove them with the vendor, store them; reconnecting updates.

    A webhook connected without a secret gets a generated one, returned here once as
    ``signing_secret`` (it is never shown again)."""
    provider_class(identifier)  # unknown identifier -> 404 before anything else
    values = body.credential_fields()
    secrets = _secret_values(values)
    remember_secrets(secrets)
    provider = store.provider(identifier)
    try:
        integration = await store.connect(
            principal.organization_id, identifier, values, provider=provider
        )
    except (Transient, RateLimited):
        raise
    except ProviderError as exc:
        log.info("connect %s refused by the vendor: %s", identifier, type(exc).__name__)
        raise ConnectRejected(exc, secrets) from None
    await _invalidate(cache, integration.id)
    log.info("connected %s integration %s", identifier, integration.id)
    signing_secret = take_generated_secret(provider)
    return schemas.ConnectResponse(
        id=integration.id,
        identifier=integration.identifier,
        name=integration.name,
        signing_secret=signing_secret,
    )


def take_generated_secret(provider: ThirdPartyProvider) -> str | None:
    """The secret the provider generated while connecting (webhooks), once; kept out of logs."""
    take = getattr(provider, "take_generated_secret", None)
    secret = take() if callable(take) else None
    if isinstance(secret, str) and secret:
        remember_secrets([secret])
        return secret
    return None


@router.delete(
    "/{integration_id}",
    status_code=204,
    response_class=Response,
    summary="Remove an integration (admin)",
    responses={403: {"model": ErrorResponse, "description": "Only admins may delete."}},
    dependencies=[Depends(rate_limit())],
)
async def delete_integration(
    integration_id: IntegrationId, principal: AdminDep, store: StoreDep, cache: CacheDep
) -> None:
    """Soft delete: the Prefect block goes, the row keeps its history without its secret."""
    await store.remove(principal.organization_id, integration_id)
    await _invalidate(cache, integration_id)
    log.info("removed integration %s", integration_id)


# -- delivery log -----------------------------------------------------------------------------

DeliveryState = Literal["pending", "delivered", "failed", "disabled"]


@router.get(
    "/{integration_id}/deliveries",
    response_model=list[schemas.DeliveryLogResponse],
    summary="An automation integration's delivery log",
)
async def deliveries(
    integration_id: IntegrationId,
    principal: Limited,
    store: StoreDep,
    db: DbDep,
    status: DeliveryState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DELIVERY_LOG)] = 50,
) -> list[dict[str, Any]]:
    """Newest first: status, attempts, the last HTTP status and error, latency, next retry.

    Integrations that take no deliveries (renders, content sources) have an empty log."""
    integration = await store.get(principal.organization_id, integration_id)  # 404 otherwise
    entries = await delivery_log(
        db, principal.organization_id, integration.id, limit=limit, status=status
    )
    return [entry.to_dict() for entry in entries]


# -- exposed functions ------------------------------------------------------------------------


@router.post(
    "/function/{integration_id}/{name}",
    response_model=FunctionCallResponse,
    summary="Call an exposed function",
    responses={
        409: {"model": ErrorResponse, "description": "The integration needs a reconnect."},
        422: {"model": ErrorResponse, "description": "Invalid input for the function."},
    },
)
async def call_function(
    integration_id: IntegrationId,
    name: Annotated[str, Path(min_length=1, max_length=64)],
    response: Response,
    principal: Annotated[Principal, Depends(rate_limit("function"))],
    store: StoreDep,
    cache: CacheDep,
    providers: ProviderFactoryDep,
    body: FunctionCallRequest | None = None,
) -> FunctionCallResponse:
    """Only ``@expose``'d functions, input validated by their model; list results cached 1 h."""
    integration, credentials = await store.credentials_for_use(
        principal.organization_id, integration_id
    )
    cls = provider_class(integration.identifier)
    cls.exposed_function(name)  # unknown name -> 404
    payload = body.input if body is not None else {}
    secrets = _secret_values(credentials)
    remember_secrets(secrets)
    cacheable = is_list_function(cls, name)
    if cacheable:
        cached = await _cache_get(cache, integration.id, name, payload, cls.identifier)
        if cached is not None:
            response.headers[CACHE_HEADER] = "hit"
            return FunctionCallResponse(function=name, result=cached)
    provider = providers(integration.identifier)
    try:
        outcome = await provider.call(name, credentials, payload)
    except InvalidCredentials as exc:
        await _mark_needs_reconnect(store, integration.id, exc, secrets)
        await _invalidate(cache, integration.id)
        raise
    result = scrub(to_jsonable(outcome), secrets)
    if cacheable:
        response.headers[CACHE_HEADER] = "miss"
        await _cache_set(cache, integration.id, name, payload, result)
    return FunctionCallResponse(function=name, result=result)


async def _cache_get(
    cache: FunctionCache, integration_id: str, name: str, payload: Any, identifier: str
) -> Any | None:
    try:
        value = await cache.get(integration_id, name, payload)
    except Exception as exc:
        log.warning("cache read failed: %s", type(exc).__name__)
        value = None
    CACHE_LOOKUPS.labels(identifier, "miss" if value is None else "hit").inc()
    return value


async def _cache_set(
    cache: FunctionCache, integration_id: str, name: str, payload: Any, value: Any
) -> None:
    try:
        await cache.set(integration_id, name, payload, value)
    except Exception as exc:
        log.warning("cache write failed: %s", type(exc).__name__)


# -- submit -----------------------------------------------------------------------------------


def send_data_model(cls: type[ThirdPartyProvider]) -> type[BaseModel] | None:
    """The pydantic model ``send_data`` accepts, when its ``data`` annotation names one."""
    try:
        hint = typing.get_type_hints(cls.send_data).get("data")
    except Exception:
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if inspect.isclass(candidate) and issubclass(candidate, BaseModel):
            return candidate
    return None


def validate_submit_input(cls: type[ThirdPartyProvider], payload: dict[str, Any]) -> None:
    """Reject bad input with 422 now, rather than as a failed job later."""
    model = send_data_model(cls)
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput(f"invalid input for {cls.identifier}", errors) from None


@router.post(
    "/{integration_id}/submit",
    status_code=202,
    response_model=SubmitResponse,
    summary="Start the provider's main action as a job",
    responses={
        409: {"model": ErrorResponse, "description": "The integration needs a reconnect."},
        422: {"model": ErrorResponse, "description": "Invalid input."},
    },
)
async def submit(
    integration_id: IntegrationId,
    body: SubmitRequest,
    principal: Annotated[Principal, Depends(rate_limit("submit"))],
    store: StoreDep,
    providers: ProviderFactoryDep,
    jobs: JobsDep,
) -> SubmitResponse:
    """Answer ``202 {job_id}`` at once; follow the job with ``GET /jobs/{job_id}``."""
    integration, credentials = await store.credentials_for_use(
        principal.organization_id, integration_id
    )
    cls = provider_class(integration.identifier)
    validate_submit_input(cls, body.input)
    secrets = _secret_values(credentials)
    remember_secrets(secrets)
    provider = providers(integration.identifier)

    async def work(progress: ProgressCallback) -> Any:
        try:
            outcome = await provider.send_data(credentials, body.input)
            if body.wait and isinstance(outcome, RenderJob) and not outcome.status.is_final:
                outcome = await _follow(provider, credentials, outcome, progress)
        except InvalidCredentials as exc:
            await _mark_needs_reconnect(store, integration.id, exc, secrets)
            raise
        return scrub(to_jsonable(outcome), secrets)

    job_id = await jobs.submit(
        organization_id=principal.organization_id,
        integration_id=integration.id,
        identifier=integration.identifier,
        work=work,
        secrets=secrets,
    )
    log.info("submitted job %s for integration %s", job_id, integration.id)
    return SubmitResponse(job_id=job_id)


async def _follow(
    provider: ThirdPartyProvider,
    credentials: dict[str, str],
    job: RenderJob,
    progress: ProgressCallback,
) -> RenderJob:
    """Poll a vendor job to the end, recording its progress as it goes."""
    wait_for_job = getattr(provider, "wait_for_job", None)
    if wait_for_job is None:
        return job
    pending: list[asyncio.Task[None]] = []

    def on_update(update: RenderJob) -> None:
        pending.append(asyncio.create_task(progress(update.progress)))

    try:
        return await wait_for_job(credentials, job.id, on_update=on_update)
    finally:
        await asyncio.gather(*pending, return_exceptions=True)
