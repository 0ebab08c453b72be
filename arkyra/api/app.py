"""The application factory: settings, database, store, limiter, cache, jobs and every router.

``create_app()`` wires everything from settings; tests pass their own store (sandboxed
providers, a test Prefect), limiter, cache or provider factory. The lifespan opens the shared
httpx client (plus the AI router's own, see :mod:`arkyra.router.transport`) and the job runner,
and closes whatever the app itself opened (the AI router first, so its usage rows are flushed).
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI
from limits import parse as parse_limit
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkyra import __version__
from arkyra.api import routes as routes_package
from arkyra.api.background import start_background
from arkyra.api.cache import DEFAULT_TTL_SECONDS, FunctionCache, cache_from_settings
from arkyra.api.deps import DEFAULT_LIMITS, ProviderFactory
from arkyra.api.errors import install_error_handlers, internal_error_response, log_unhandled
from arkyra.api.jobs import JobRunner
from arkyra.api.logging import TRUSTED, get_logger, request_id_var
from arkyra.api.metrics import MetricsMiddleware, route_template
from arkyra.config import Settings, get_settings
from arkyra.credentials import CredentialStore, PrefectBlockMirror
from arkyra.db.session import Database
from arkyra.errors import ConfigError
from arkyra.http.client import build_client
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.ratelimit import RateLimiter
from arkyra.router.transport import build_router_client
from arkyra.security.vault import Vault

log = get_logger("arkyra.api")
access_log = get_logger("arkyra.api.access")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    """Request ids, one access-log line per request, and the last line of defence for bugs.

    An exception nobody handled is logged (with the request id) and answered with a bare 500
    that carries no internals.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        token = request_id_var.set(request_id)
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                headers.extend(_missing_limit_headers(scope, headers))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log_unhandled(scope.get("method", ""), scope.get("path", ""), exc)
            if not started_response:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                method, route = scope.get("method", ""), route_template(scope)
                access_log.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        TRUSTED: True,  # method, route template and status: nothing secret
                    },
                )
            request_id_var.reset(token)


def _missing_limit_headers(
    scope: Scope, headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The request's ``RateLimit-*`` headers (``deps.rate_limit``) that the response lacks (a
    429 already carries its own)."""
    limit_headers = scope.get("state", {}).get("rate_limit_headers") or {}
    present = {name.lower() for name, _ in headers}
    return [
        (name.lower().encode(), value.encode())
        for name, value in limit_headers.items()
        if name.lower().encode() not in present
    ]


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            return text if _SAFE_REQUEST_ID.match(text) else None
    return None


async def _close_ai_router(app: FastAPI) -> None:
    """Flush the AI router's queued usage rows and give back budget leases (built lazily)."""
    ai = getattr(app.state, "ai_router", None)
    if ai is not None:
        app.state.ai_router = None
        await ai.aclose()


def _check_limits(limits: Mapping[str, str]) -> None:
    """Fail at start-up, naming the bucket, when a limit is not a rate like ``60/minute``."""
    for bucket, value in limits.items():
        if bucket not in DEFAULT_LIMITS:
            known = ", ".join(sorted(DEFAULT_LIMITS))
            raise ConfigError(f"rate limit {bucket!r} is not a bucket (buckets: {known})")
        try:
            parse_limit(value)
        except ValueError:
            raise ConfigError(
                f"rate limit {bucket!r}: {value!r} is not a rate (try '60/minute')"
            ) from None


def discover_routers() -> list[APIRouter]:
    """Every ``router`` defined by a module in :mod:`arkyra.api.routes` (by module name)."""
    found: list[APIRouter] = []
    for info in sorted(pkgutil.iter_modules(routes_package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{routes_package.__name__}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found


def _provider_factory(settings: Settings, client: httpx.AsyncClient) -> ProviderFactory:
    def make(identifier: str) -> ThirdPartyProvider:
        return get_provider(identifier, settings=settings, client=client)

    return make


def _default_store(settings: Settings, db: Database, factory: ProviderFactory) -> CredentialStore:
    """The store wired from settings, sharing the app's database and vendor client."""
    return CredentialStore(
        db,
        Vault.from_settings(settings),
        PrefectBlockMirror(),
        settings=settings,
        provider_factory=factory,
    )


def create_app(
    settings: Settings | None = None,
    *,
    store: CredentialStore | None = None,
    limiter: RateLimiter | None = None,
    database: Database | None = None,
    cache: FunctionCache | None = None,
    provider_factory: ProviderFactory | None = None,
    http_client: httpx.AsyncClient | None = None,
    limits: Mapping[str, str] | None = None,
    cache_ttl_seconds: float = DEFAULT_TTL_SECONDS,
    job_stale_after_seconds: float = 60.0,
    background_work: bool = True,
) -> FastAPI:
    """The API. ``limits`` maps a bucket (``default``, ``connect``, ``function``, ``submit``,
    ``ai``) to a rate such as ``"120/minute"``, per organization and route, over
    ``settings.rate_limits`` and the defaults; ``background_work`` runs the
    delivery worker and alert sender in this process (off for apps that only serve requests)."""
    settings = settings or get_settings()
    merged_limits = {**DEFAULT_LIMITS, **settings.rate_limits, **dict(limits or {})}
    _check_limits(merged_limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as owned:  # closes only what the app itself opened
            db = database or (store.db if store is not None else None)
            if db is None:
                db = Database.from_settings(settings)
                owned.push_async_callback(db.dispose)
            client = http_client
            ai_client = http_client  # the AI router shares a client the caller handed in
            if client is None:
                client = await owned.enter_async_context(build_client(settings))
                ai_client = await owned.enter_async_context(build_router_client(settings))
            factory = provider_factory or _provider_factory(settings, client)
            the_cache = cache
            if the_cache is None:
                the_cache = cache_from_settings(settings, cache_ttl_seconds)
                owned.push_async_callback(the_cache.close)
            jobs = JobRunner(db, stale_after_seconds=job_stale_after_seconds)
            app.state.settings = settings
            app.state.db = db
            app.state.http_client = client
            app.state.ai_http_client = ai_client
            app.state.provider_factory = factory
            app.state.store = store or _default_store(settings, db, factory)
            app.state.limiter = limiter or RateLimiter.from_settings(settings)
            app.state.limits = merged_limits
            app.state.cache = the_cache
            app.state.jobs = jobs
            owned.push_async_callback(_close_ai_router, app)  # before the db and clients
            interrupted = await jobs.start()
            owned.push_async_callback(jobs.close)
            if interrupted:
                log.warning("%d job(s) left by a stopped process are now interrupted", interrupted)
            if background_work:  # the delivery worker and the alert sender
                background = await start_background(app)
                owned.push_async_callback(background.stop)
            yield

    app = FastAPI(
        title="ARKYRA Pipelines API",
        version=__version__,
        description="Integrations, exposed functions, jobs, the AI router, health and metrics.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limits = merged_limits
    install_error_handlers(app)
    for router in discover_routers():
        app.include_router(router)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app
