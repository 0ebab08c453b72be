"""Shared fixtures: settings with test keys, and the sandbox served in-process over ASGI.

No test reaches the internet: vendor HTTP goes to the sandbox (through ``httpx.ASGITransport``)
or to respx.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

# Prefect reads .env and PREFECT_API_URL; keep a developer's settings out of the tests.
os.environ["PREFECT_API_URL"] = ""

from arkyra.config import Settings  # noqa: E402
from arkyra.providers import ThirdPartyProvider, get_provider  # noqa: E402
from arkyra.sandbox.app import create_app  # noqa: E402
from arkyra.sandbox.state import SandboxState  # noqa: E402

SANDBOX_URL = "http://sandbox.test"
TEST_ENCRYPTION_KEY = "t1:" + "A" * 42 + "Q"  # 32 bytes of zeros+, base64url


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for tests: explicit keys, the sandbox base URLs, fast job polling."""
    values: dict[str, object] = {
        "home": home,
        "encryption_keys": TEST_ENCRYPTION_KEY,
        "fingerprint_key": "fingerprint-key-for-tests-only-000000",
        "jwt_secret": "jwt-secret-for-tests-only-0000000000000000",
        "sandbox": True,
        "sandbox_url": SANDBOX_URL,
        "http_max_attempts": 3,
        "retry_after_max_seconds": 2.0,
        "job_poll_initial_seconds": 0.01,
        "job_poll_max_seconds": 0.05,
        "job_deadline_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def sandbox_state() -> SandboxState:
    return SandboxState(seed=1234)


@pytest.fixture
async def sandbox_client(sandbox_state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose transport is the sandbox app itself (no sockets)."""
    transport = httpx.ASGITransport(app=create_app(sandbox_state))
    async with httpx.AsyncClient(transport=transport, base_url=SANDBOX_URL) as client:
        yield client


@pytest.fixture
def provider_factory(
    settings: Settings, sandbox_client: httpx.AsyncClient
) -> Callable[[str], ThirdPartyProvider]:
    """``provider_factory("heygen")``: the real provider, talking to the in-process sandbox."""

    def make(identifier: str) -> ThirdPartyProvider:
        return get_provider(identifier, settings=settings, client=sandbox_client)

    return make
