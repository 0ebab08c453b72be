"""A credential store on each database, with real Prefect blocks and the sandboxed HeyGen."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from arkyra.config import Settings
from arkyra.credentials.mirror import PrefectBlockMirror
from arkyra.credentials.store import CredentialStore
from arkyra.db.session import Database
from arkyra.providers import get_provider
from arkyra.security.vault import Vault


@pytest.fixture
async def mirror(prefect_server: None) -> AsyncIterator[PrefectBlockMirror]:
    mirror = PrefectBlockMirror()
    yield mirror
    for block in await mirror.list_blocks():  # leave the shared Prefect server clean
        await mirror.delete(block.name, block.block.identifier)


@pytest.fixture
def store(
    db: Database,
    db_settings: Settings,
    mirror: PrefectBlockMirror,
    sandbox_client: httpx.AsyncClient,
) -> CredentialStore:
    return CredentialStore(
        db,
        Vault.from_settings(db_settings),
        mirror,
        settings=db_settings,
        provider_factory=lambda ident: get_provider(
            ident, settings=db_settings, client=sandbox_client
        ),
    )
