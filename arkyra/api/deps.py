"""FastAPI dependencies shared by every router (ours and the AI router's).

``PrincipalDep`` turns the bearer JWT into a :class:`Principal` (401 with ``WWW-Authenticate``
when missing or invalid); ``AdminDep`` also requires the admin role (403 otherwise). The
organization always comes from the token. ``RateLimitDep`` / :func:`rate_limit` count a request
against the organization's limit for the route; ``RequestContextMiddleware`` adds the
``RateLimit-*`` headers to the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from arkyra.api.cache import FunctionCache
from arkyra.api.errors import AUTHENTICATE, TooManyRequests
from arkyra.api.jobs import JobRunner
from arkyra.config import Settings
from arkyra.credentials import CredentialStore
from arkyra.db.session import Database
from arkyra.providers import ThirdPartyProvider
from arkyra.ratelimit import RateLimiter
from arkyra.security.tokens import InvalidToken, Principal, verify_token

ProviderFactory = Callable[[str], ThirdPartyProvider]

#: Default limits per organization and route; ``create_app(limits=...)`` overrides by bucket.
DEFAULT_LIMITS: dict[str, str] = {
    "default": "120/minute",
    "connect": "20/minute",
    "function": "60/minute",
    "submit": "30/minute",
    # The AI doors (/ai/*, /v1/chat/completions): budgets bound the spend; this bounds a
    # runaway client's request rate, high enough for pipelines fanning out.
    "ai": "3000/minute",
}

#: RFC 6750: a token was sent but is not acceptable.
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="arkyra", error="invalid_token"'}

_bearer = HTTPBearer(auto_error=False, description="A JWT minted by `arkyra token`.")


# The getters below are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a
# worker thread, a thread hop per dependency per request on the hot path.


def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise RuntimeError(f"app.state.{name} is not set; build the app with create_app()")
    return value


async def get_settings_dep(request: Request) -> Settings:
    return _state(request, "settings")


async def get_store(request: Request) -> CredentialStore:
    return _state(request, "store")


async def get_db(request: Request) -> Database:
    return _state(request, "db")


async def get_limiter(request: Request) -> RateLimiter:
    return _state(request, "limiter")


async def get_cache(request: Request) -> FunctionCache:
    return _state(request, "cache")


async def get_jobs(request: Request) -> JobRunner:
    return _state(request, "jobs")


async def get_provider_factory(request: Request) -> ProviderFactory:
    return _state(request, "provider_factory")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[CredentialStore, Depends(get_store)]
DbDep = Annotated[Database, Depends(get_db)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
CacheDep = Annotated[FunctionCache, Depends(get_cache)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
ProviderFactoryDep = Annotated[ProviderFactory, Depends(get_provider_factory)]


async def get_principal(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a valid bearer JWT; 401 with ``WWW-Authenticate`` otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "a bearer token is required", headers=AUTHENTICATE)
    try:
        principal = verify_token(settings, credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(401, str(exc), headers=INVALID_TOKEN) from None
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, if an admin of their organization; 403 for members."""
    if not principal.is_admin:
        raise HTTPException(403, "this action needs the admin role")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def route_key(request: Request) -> str:
    """``POST /third-party/{identifier}``: the method and the route template, not the raw path."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or request.url.path
    return f"{request.method} {template}"


def rate_limit(bucket: str = "default") -> Callable[..., Awaitable[Principal]]:
    """A dependency that counts the request against ``bucket``'s limit for org + route.

    Returns the principal, so ``Annotated[Principal, Depends(rate_limit("connect"))]`` is both
    authentication and limiting. Over the limit: 429 with ``Retry-After``.
    """

    async def limited(request: Request, principal: PrincipalDep, limiter: LimiterDep) -> Principal:
        limits: dict[str, str] = getattr(request.app.state, "limits", None) or DEFAULT_LIMITS
        limit = limits.get(bucket) or limits.get("default") or DEFAULT_LIMITS["default"]
        decision = await limiter.hit(limit, principal.organization_id, route_key(request))
        if not decision.allowed:
            raise TooManyRequests(decision)
        # Added to the answer by RequestContextMiddleware, also to a response the route builds
        # itself (a stream, an error body), which would drop headers set on FastAPI's response.
        request.state.rate_limit_headers = decision.headers()
        return principal

    limited.__name__ = f"rate_limit_{bucket}"
    return limited


RateLimitDep = Annotated[Principal, Depends(rate_limit())]
#: Authentication plus the ``ai`` bucket's limit (the AI router's routes).
AILimited = Annotated[Principal, Depends(rate_limit("ai"))]
