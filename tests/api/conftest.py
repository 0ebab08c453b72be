"""The API on each database, with the sandboxed vendors and real Prefect blocks.

``api`` is an ``httpx.AsyncClient`` talking to the app over ASGI (lifespan run by
asgi-lifespan); ``auth(org, role)`` gives the headers of a valid token for that organization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage

from arkyra.api.app import create_app
from arkyra.api.cache import MemoryFunctionCache
from arkyra.config import Settings
from arkyra.credentials.mirror import PrefectBlockMirror
from arkyra.credentials.store import CredentialStore
from arkyra.db.session import Database
from arkyra.http.ssrf import Resolver
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.automation._hooks import HookProvider
from arkyra.ratelimit import RateLimiter
from arkyra.security.tokens import mint_token
from arkyra.security.vault import Vault

API_URL = "http://api.test"
HEYGEN_KEY = "hg_api_tests_secret_0123456789abcdef"
OTHER_HEYGEN_KEY = "hg_api_tests_other_secret_fedcba9876543210"


@dataclass
class Vendors:
    """Which httpx client the providers use: the sandbox, or a stand-in set by a test."""

    settings: Settings
    client: httpx.AsyncClient
    override: httpx.AsyncClient | None = None
    made: list[ThirdPartyProvider] = field(default_factory=list)
    #: DNS for the automation providers' SSRF guard (a test's table instead of real look-ups).
    resolver: Resolver | None = None

    def __call__(self, identifier: str) -> ThirdPartyProvider:
        provider = get_provider(
            identifier, settings=self.settings, client=self.override or self.client
        )
        if self.resolver is not None and isinstance(provider, HookProvider):
            provider.resolver = self.resolver
        self.made.append(provider)
        return provider


@pytest.fixture
async def mirror(prefect_server: None) -> AsyncIterator[PrefectBlockMirror]:
    mirror = PrefectBlockMirror()
    yield mirror
    for block in await mirror.list_blocks():  # leave the shared Prefect server clean
        await mirror.delete(block.name, block.block.identifier)


@pytest.fixture
def vendors(db_settings: Settings, sandbox_client: httpx.AsyncClient) -> Vendors:
    return Vendors(db_settings, sandbox_client)


@pytest.fixture
def store(
    db: Database, db_settings: Settings, mirror: PrefectBlockMirror, vendors: Vendors
) -> CredentialStore:
    return CredentialStore(
        db, Vault.from_settings(db_settings), mirror, settings=db_settings, provider_factory=vendors
    )


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(MemoryStorage())


@pytest.fixture
def function_cache() -> MemoryFunctionCache:
    return MemoryFunctionCache()


@pytest.fixture
def make_app(
    db_settings: Settings,
    store: CredentialStore,
    limiter: RateLimiter,
    function_cache: MemoryFunctionCache,
    vendors: Vendors,
    sandbox_client: httpx.AsyncClient,
) -> Callable[..., FastAPI]:
    def make(settings: Settings | None = None, **overrides: object) -> FastAPI:
        values: dict[str, object] = {
            "store": store,
            "limiter": limiter,
            "cache": function_cache,
            "provider_factory": vendors,
            "http_client": sandbox_client,
        }
        values.update(overrides)
        return create_app(settings or db_settings, **values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as client:
            yield client


@pytest.fixture
def auth(db_settings: Settings) -> Callable[..., dict[str, str]]:
    def headers(org: str = "org-a", role: str = "admin", **kwargs: object) -> dict[str, str]:
        token = mint_token(db_settings, organization_id=org, role=role, **kwargs)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    return headers


async def connect_heygen(
    api: httpx.AsyncClient, headers: dict[str, str], key: str = HEYGEN_KEY
) -> str:
    """Connect the sandboxed HeyGen and return the integration id."""
    response = await api.post(
        "/third-party/heygen", json={"fields": {"api_key": key}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]
