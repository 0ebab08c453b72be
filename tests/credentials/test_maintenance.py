"""Key rotation and block/row drift repair, on each database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from arkyra.blocks.credentials import build_block
from arkyra.config import generate_encryption_key
from arkyra.credentials.maintenance import rotate_keys, sync_blocks
from arkyra.credentials.store import CredentialStore, NeedsReconnect
from arkyra.db.models import IntegrationStatus, ThirdParty
from arkyra.db.session import Database
from arkyra.security.vault import Vault, parse_keys

ORG = "acme"
KEYS = [f"hg_account_{n}_secret" for n in range(5)]


async def _connect_all(store: CredentialStore) -> list[str]:
    return [(await store.connect(ORG, "heygen", {"api_key": k})).id for k in KEYS]


async def test_rotation_re_encrypts_every_row_then_old_key_can_go(
    store: CredentialStore, db: Database, db_settings
) -> None:
    ids = await _connect_all(store)
    old_spec = db_settings.encryption_keys.get_secret_value()
    new_spec = "k-new:" + generate_encryption_key()
    store.vault = Vault(parse_keys(f"{new_spec},{old_spec}"))

    report = await rotate_keys(store)
    assert (report.rotated, report.already_current, report.failed) == (5, 0, 0)
    async with db.sessions() as session:
        assert {row.key_id for row in await session.scalars(select(ThirdParty))} == {"k-new"}

    again = await rotate_keys(store)
    assert (again.rotated, again.already_current) == (0, 5)

    store.vault = Vault(parse_keys(new_spec))  # the old key is removed
    for integration_id, key in zip(ids, KEYS, strict=True):
        _, credentials = await store.credentials_for_use(ORG, integration_id)
        assert credentials["api_key"] == key


async def test_rotation_marks_unreadable_rows_and_keeps_them(
    store: CredentialStore, db: Database
) -> None:
    ids = await _connect_all(store)
    async with db.transaction() as session:
        row = await session.get(ThirdParty, ids[0])
        assert row is not None
        row.key_id = "gone"
    store.vault = Vault(
        parse_keys(
            "k-new:"
            + generate_encryption_key()
            + ","
            + store.settings.encryption_keys.get_secret_value()
            + ",gone:"
            + generate_encryption_key()
        )
    )
    report = await rotate_keys(store)
    assert (report.rotated, report.failed) == (4, 1)
    async with db.sessions() as session:
        broken = await session.get(ThirdParty, ids[0])
    assert broken is not None
    assert broken.status == IntegrationStatus.NEEDS_RECONNECT
    with pytest.raises(NeedsReconnect):
        await store.credentials_for_use(ORG, ids[0])


async def test_sync_repairs_both_directions(store: CredentialStore, db: Database) -> None:
    kept, lost_block, stale, deleted = [
        (await store.connect(ORG, "heygen", {"api_key": k})).id for k in KEYS[:4]
    ]
    mirror = store.mirror
    await mirror.delete(f"tp-{lost_block}", "heygen")
    await mirror.save(
        f"tp-{stale}",
        build_block(
            "heygen", organization_id=ORG, integration_id=stale, credentials={"api_key": "edited"}
        ),
    )
    await store.remove(ORG, deleted)
    await mirror.save(  # a block left behind for a deleted row
        f"tp-{deleted}",
        build_block(
            "heygen", organization_id=ORG, integration_id=deleted, credentials={"api_key": "x"}
        ),
    )
    stray = "0b5c6a9e-1111-4222-8333-444455556666"  # a block whose row was lost
    await mirror.save(
        f"tp-{stray}",
        build_block(
            "heygen",
            organization_id="restored-org",
            integration_id=stray,
            credentials={"api_key": "hg_restored_key"},
            account_id="restored-user",
            account_name="Restored",
        ),
    )

    dry = await sync_blocks(store, repair=False)
    assert dry.counts() == {
        "missing_block": 1,
        "stale_block": 1,
        "orphan_block": 1,
        "missing_row": 1,
    }
    assert not any(d.repaired for d in dry.drift)

    report = await sync_blocks(store)
    assert all(d.repaired for d in report.drift), report.drift
    assert (await sync_blocks(store, repair=False)).drift == []

    names = {b.name: b.credentials for b in await mirror.list_blocks()}
    assert names[f"tp-{lost_block}"] == {"api_key": KEYS[1]}
    assert names[f"tp-{stale}"] == {"api_key": KEYS[2]}
    assert f"tp-{deleted}" not in names
    assert f"tp-{kept}" in names
    _, restored = await store.credentials_for_use("restored-org", stray)
    assert restored == {"api_key": "hg_restored_key"}


async def test_sync_marks_undecryptable_rows(store: CredentialStore, db: Database) -> None:
    integration = await store.connect(ORG, "heygen", {"api_key": KEYS[0]})
    async with db.transaction() as session:
        row = await session.get(ThirdParty, integration.id)
        assert row is not None
        row.api_key = row.api_key[:-1] + bytes([row.api_key[-1] ^ 1])
    report = await sync_blocks(store)
    assert report.counts() == {"undecryptable_row": 1}
    [listed] = await store.list(ORG)
    assert listed.status == IntegrationStatus.NEEDS_RECONNECT
