"""The credential store on SQLite and PostgreSQL, with real Prefect blocks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from arkyra.blocks.credentials import ApiKeyCredentials, ArkyraCredentials
from arkyra.credentials.store import CredentialStore, NeedsReconnect
from arkyra.db.models import IntegrationStatus, ThirdParty
from arkyra.db.session import Database
from arkyra.errors import InvalidCredentials, InvalidInput, NotFound

KEY = "hg_live_key_0123456789abcdef"
ORG = "acme"


async def test_connect_stores_row_and_block(store: CredentialStore) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY})
    assert integration.identifier == "heygen"
    assert integration.status == "connected"
    block = await ApiKeyCredentials.aload(f"tp-{integration.id}")
    assert block.api_key.get_secret_value() == KEY
    assert block.organization_id == ORG
    assert KEY not in repr(block)
    _, credentials = await store.credentials_for_use(ORG, integration.id)
    assert credentials == {"api_key": KEY}
    assert [i.id for i in await store.list(ORG)] == [integration.id]


async def test_no_plaintext_secret_anywhere_in_the_database(
    store: CredentialStore, db: Database
) -> None:
    await store.connect(ORG, "heygen", {"api_key": KEY})
    await store.connect("other-org", "heygen", {"api_key": KEY + "x", "label": "second"})
    if db.dialect == "sqlite":
        await db.dispose()  # flush WAL into the file before reading raw bytes
        path = Path(db.url.database or "")
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"hg_live_key" not in raw
        assert b"0123456789abcdef" not in raw
    else:
        async with db.engine.connect() as conn:
            dump = await conn.execute(text("SELECT t::text FROM third_party t"))
            rows = [r[0] for r in dump]
        assert len(rows) == 2
        for row in rows:
            assert "hg_live_key" not in row
            assert "0123456789abcdef" not in row
        async with db.engine.connect() as conn:
            hexdump = await conn.execute(text("SELECT encode(api_key, 'escape') FROM third_party"))
            assert all("hg_live" not in r[0] for r in hexdump)


async def test_internal_id_is_not_the_key(store: CredentialStore, db: Database) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY})
    async with db.sessions() as session:
        row = await session.get(ThirdParty, integration.id)
    assert row is not None
    assert KEY not in row.internal_id
    assert KEY[-8:] not in row.internal_id


async def test_same_account_again_updates_instead_of_adding(
    store: CredentialStore, db: Database
) -> None:
    first = await store.connect(ORG, "heygen", {"api_key": KEY})
    second = await store.connect(ORG, "heygen", {"api_key": KEY})
    assert first.id == second.id
    async with db.sessions() as session:
        count = len(list(await session.scalars(select(ThirdParty))))
    assert count == 1


async def test_invalid_key_stores_nothing(store: CredentialStore, db: Database) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await store.connect(ORG, "heygen", {"api_key": "wrong-key-123"})
    assert "wrong-key-123" not in str(caught.value)
    assert await store.list(ORG) == []
    assert await store.mirror.list_blocks() == []


async def test_missing_field_is_reported_per_field(store: CredentialStore) -> None:
    with pytest.raises(InvalidInput) as caught:
        await store.connect(ORG, "heygen", {})
    assert "api_key" in caught.value.errors
    with pytest.raises(InvalidInput) as caught:
        await store.connect(ORG, "heygen", {"api_key": KEY, "bogus": "1"})
    assert "bogus" in caught.value.errors
    with pytest.raises(InvalidInput):
        await store.connect("bad org!", "heygen", {"api_key": KEY})


class BrokenMirror:
    """Delegates to the real mirror but fails every save."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner

    async def save(self, name: str, block: ArkyraCredentials) -> str:
        raise RuntimeError("prefect api unavailable")

    async def delete(self, name: str, identifier: str) -> bool:
        return await self.inner.delete(name, identifier)

    async def list_blocks(self):  # type: ignore[no-untyped-def]
        return await self.inner.list_blocks()


async def test_failed_block_write_leaves_no_row(store: CredentialStore, db: Database) -> None:
    store.mirror = BrokenMirror(store.mirror)
    with pytest.raises(RuntimeError, match="prefect api unavailable"):
        await store.connect(ORG, "heygen", {"api_key": KEY})
    async with db.sessions() as session:
        assert list(await session.scalars(select(ThirdParty))) == []


class CommitFails(Database):
    """A database whose transactions fail at commit time (disk full, connection lost)."""

    def __init__(self, inner: Database) -> None:
        self.__dict__.update(inner.__dict__)

    @asynccontextmanager
    async def transaction(self):  # type: ignore[no-untyped-def,override]
        async with self.sessions() as session:
            await session.begin()
            yield session
            await session.rollback()
            raise OperationalError("COMMIT", {}, Exception("connection lost"))


async def test_failed_row_write_leaves_no_block(store: CredentialStore, db: Database) -> None:
    store.db = CommitFails(db)
    with pytest.raises(OperationalError):
        await store.connect(ORG, "heygen", {"api_key": KEY})
    store.db = db
    assert await store.mirror.list_blocks() == []
    assert await store.list(ORG) == []


async def test_failed_update_restores_the_previous_block(
    store: CredentialStore, db: Database
) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY, "label": "before"})
    store.db = CommitFails(db)
    with pytest.raises(OperationalError):
        await store.connect(ORG, "heygen", {"api_key": KEY, "label": "after"})
    store.db = db
    block = await ApiKeyCredentials.aload(f"tp-{integration.id}")
    assert block.label == "before"


async def test_corrupted_ciphertext_marks_needs_reconnect(
    store: CredentialStore, db: Database
) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY})
    async with db.transaction() as session:
        row = await session.get(ThirdParty, integration.id)
        assert row is not None
        blob = bytearray(row.api_key)
        blob[-1] ^= 0xFF
        row.api_key = bytes(blob)
    with pytest.raises(NeedsReconnect, match="connected again"):
        await store.credentials_for_use(ORG, integration.id)
    [listed] = await store.list(ORG)
    assert listed.status == IntegrationStatus.NEEDS_RECONNECT
    # the row is kept; reconnecting the same account heals it
    healed = await store.connect(ORG, "heygen", {"api_key": KEY})
    assert healed.id == integration.id
    assert healed.status == "connected"
    _, credentials = await store.credentials_for_use(ORG, integration.id)
    assert credentials["api_key"] == KEY


async def test_ciphertext_moved_to_another_row_does_not_open(
    store: CredentialStore, db: Database
) -> None:
    a = await store.connect(ORG, "heygen", {"api_key": KEY})
    b = await store.connect(ORG, "heygen", {"api_key": "hg_noscope_other"})
    assert a.id != b.id
    async with db.transaction() as session:
        row_a = await session.get(ThirdParty, a.id)
        assert row_a is not None
        await session.execute(
            update(ThirdParty).where(ThirdParty.id == b.id).values(api_key=row_a.api_key)
        )
    with pytest.raises(NeedsReconnect):
        await store.credentials_for_use(ORG, b.id)


async def test_remove_soft_deletes_and_drops_the_block(
    store: CredentialStore, db: Database
) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY})
    await store.remove(ORG, integration.id)
    assert await store.list(ORG) == []
    assert await store.mirror.list_blocks() == []
    async with db.sessions() as session:
        row = await session.get(ThirdParty, integration.id)
    assert row is not None
    assert row.deleted_at is not None
    assert row.api_key == b""  # the secret goes with the integration
    with pytest.raises(NotFound):
        await store.remove(ORG, integration.id)
    again = await store.connect(ORG, "heygen", {"api_key": KEY})
    assert again.id == integration.id
    assert again.deleted_at is None


async def test_another_organization_sees_nothing(store: CredentialStore) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEY})
    with pytest.raises(NotFound):
        await store.get("intruder", integration.id)
    with pytest.raises(NotFound):
        await store.credentials_for_use("intruder", integration.id)
    with pytest.raises(NotFound):
        await store.remove("intruder", integration.id)
    assert await store.list("intruder") == []
    assert (await store.get(ORG, integration.id)).id == integration.id
