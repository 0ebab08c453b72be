"""Delivery fixtures: a fake DNS, a fake clock, and the sandbox receiver behind the SSRF guard.

The receiver runs in-process (``httpx.ASGITransport``) *inside* a real ``GuardedTransport``, so
every delivery goes through the guard, the fake resolver and address pinning, without sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from arkyra.config import Settings
from arkyra.db.session import Database
from arkyra.delivery.worker import DeliveryWorker
from arkyra.errors import NotFound
from arkyra.http.ssrf import guarded_client
from arkyra.sandbox.app import create_app
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

PUBLIC_IP = "93.184.216.34"
RECEIVER = "https://hooks.example.com/receiver"

#: What the fake DNS answers; names that resolve to forbidden addresses included.
DNS: dict[str, list[str]] = {
    "hooks.example.com": [PUBLIC_IP],
    "sandbox.test": [PUBLIC_IP],
    "internal.example.com": ["10.0.0.5"],
    "meta.example.com": ["169.254.169.254"],
    "loop.example.com": ["127.0.0.1"],
    "mapped.example.com": ["::ffff:192.168.1.1"],
    "half.example.com": [PUBLIC_IP, "172.16.0.9"],
}


class FakeResolver:
    """Answers from a (mutable) table and records look-ups; unknown names fail loudly."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(DNS if table is None else table)
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise AssertionError(f"unexpected DNS look-up of {host!r}")
        return self.table[host]


class FakeClock:
    """A clock the test moves by hand (timezone-aware UTC)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Credentials:
    """The credential lookup a worker gets: ``(org, integration) -> credentials``."""

    def __init__(self) -> None:
        self.by_integration: dict[str, dict[str, str]] = {}

    async def __call__(self, organization_id: str, integration_id: str) -> Mapping[str, str]:
        try:
            return self.by_integration[integration_id]
        except KeyError:
            raise NotFound(f"integration {integration_id} not found") from None


@pytest.fixture
def strict_settings(tmp_path: Any) -> Settings:
    """Production-like checks (HTTPS only, vendor hosts enforced), no loopback."""
    return make_settings(tmp_path, sandbox=False)


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver_state() -> SandboxState:
    return SandboxState(seed=7)


@pytest.fixture
def receiver_app(receiver_state: SandboxState) -> Any:
    return create_app(receiver_state)


@pytest.fixture
async def guarded(
    strict_settings: Settings, resolver: FakeResolver, receiver_app: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A guarded client whose pinned connections land on the in-process receiver."""
    client = guarded_client(
        strict_settings, resolver=resolver, inner=httpx.ASGITransport(app=receiver_app)
    )
    async with client:
        yield client


@pytest.fixture
async def control(receiver_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Talks to the receiver's control routes directly."""
    transport = httpx.ASGITransport(app=receiver_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
        yield client


@pytest.fixture
def credentials() -> Credentials:
    return Credentials()


@pytest.fixture
def make_worker(
    strict_settings: Settings,
    guarded: httpx.AsyncClient,
    resolver: FakeResolver,
    clock: FakeClock,
    credentials: Credentials,
) -> Any:
    import random

    def build(db: Database, **kwargs: Any) -> DeliveryWorker:
        options: dict[str, Any] = {
            "settings": strict_settings,
            "client": guarded,
            "resolver": resolver,
            "clock": clock,
            "rng": random.Random(3),
        }
        options.update(kwargs)
        return DeliveryWorker(db, credentials, **options)

    return build


async def receiver_log(control: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await control.get(f"/receiver/_control/{path}")
    response.raise_for_status()
    return response.json()


async def set_behaviour(control: httpx.AsyncClient, path: str, **behaviour: Any) -> None:
    response = await control.put(f"/receiver/_control/{path}", json=behaviour)
    response.raise_for_status()


@pytest.fixture
async def shared_url(database_url: str) -> AsyncIterator[str]:
    """The database URL for tests that open several engines (restarts, competing workers);
    on PostgreSQL, which outlives the test, the delivery tables are emptied afterwards."""
    yield database_url
    if database_url.startswith("postgresql"):
        from sqlalchemy import text

        db = Database(database_url)
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE deliveries, delivery_endpoints"))
        await db.dispose()
