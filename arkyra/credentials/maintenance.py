"""Key rotation and block/row drift repair (``arkyra keys rotate``, ``arkyra credentials sync``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from arkyra.blocks.credentials import build_block
from arkyra.credentials.store import CredentialStore, _encode, _ensure_organization, seal_context
from arkyra.db.models import IntegrationStatus, ThirdParty, utcnow
from arkyra.errors import DecryptionFailed
from arkyra.security.vault import Sealed

BATCH = 200


@dataclass
class RotationReport:
    rotated: int = 0
    already_current: int = 0
    failed: int = 0
    primary_key_id: str = ""

    def to_dict(self) -> dict[str, int | str]:
        return {
            "primary_key_id": self.primary_key_id,
            "rotated": self.rotated,
            "already_current": self.already_current,
            "failed": self.failed,
        }


async def rotate_keys(store: CredentialStore) -> RotationReport:
    """Re-encrypt every active row under the primary key; rows that will not open are marked
    ``needs_reconnect`` (kept, never deleted). Afterwards old keys can be removed."""
    vault = store.vault
    report = RotationReport(primary_key_id=vault.primary_key_id)
    last_id = ""
    while True:
        async with store.db.transaction() as session:
            rows = list(
                await session.scalars(
                    select(ThirdParty)
                    .where(ThirdParty.deleted_at.is_(None), ThirdParty.id > last_id)
                    .order_by(ThirdParty.id)
                    .limit(BATCH)
                    .with_for_update()
                )
            )
            for row in rows:
                last_id = row.id
                if not vault.needs_rotation(Sealed(row.key_id, row.api_key)):
                    report.already_current += 1
                    continue
                context = seal_context(row.id)
                try:
                    plaintext = vault.decrypt(Sealed(row.key_id, row.api_key), context=context)
                except DecryptionFailed as exc:
                    row.status = IntegrationStatus.NEEDS_RECONNECT
                    row.status_reason = f"key rotation could not decrypt the credentials ({exc})"
                    report.failed += 1
                    continue
                sealed = vault.encrypt(plaintext, context=context)
                row.api_key, row.key_id = sealed.blob, sealed.key_id
                report.rotated += 1
        if len(rows) < BATCH:
            return report


@dataclass
class Drift:
    kind: str
    integration_id: str
    identifier: str
    detail: str
    repaired: bool = False


@dataclass
class SyncReport:
    checked_rows: int = 0
    checked_blocks: int = 0
    drift: list[Drift] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.drift))


async def sync_blocks(store: CredentialStore, *, repair: bool = True) -> SyncReport:
    """Find and (optionally) repair drift between rows and blocks, in both directions.

    - row without block, or block whose content differs: the block is rewritten from the row
      (the row is the encrypted record the store writes transactionally);
    - block of a deleted row: the block is removed;
    - block without any row: the row is rebuilt from the block (it carries the account id);
    - row that will not decrypt: marked ``needs_reconnect``.
    """
    report = SyncReport()
    blocks = {b.name: b for b in await store.mirror.list_blocks()}
    report.checked_blocks = len(blocks)
    async with store.db.transaction() as session:
        rows = list(await session.scalars(select(ThirdParty).order_by(ThirdParty.id)))
        report.checked_rows = len(rows)
        known_ids = {row.id for row in rows}
        for row in rows:
            block = blocks.pop(row.block_name, None)
            if not row.is_active:
                if block is not None:
                    drift = Drift("orphan_block", row.id, row.identifier, "row is deleted")
                    if repair:
                        drift.repaired = await store.mirror.delete(row.block_name, row.identifier)
                    report.drift.append(drift)
                continue
            try:
                credentials = store.open_row(row)
            except DecryptionFailed as exc:
                drift = Drift("undecryptable_row", row.id, row.identifier, str(exc))
                if repair:
                    row.status = IntegrationStatus.NEEDS_RECONNECT
                    row.status_reason = f"credentials could not be decrypted ({exc})"
                    drift.repaired = True
                report.drift.append(drift)
                continue
            if block is None or block.credentials != credentials:
                kind = "missing_block" if block is None else "stale_block"
                drift = Drift(kind, row.id, row.identifier, f"block {row.block_name}")
                if repair:
                    fresh = build_block(
                        row.identifier,
                        organization_id=row.organization_id,
                        integration_id=row.id,
                        credentials=credentials,
                        account_id=row.internal_id,
                        account_name=row.name,
                    )
                    row.block_document_id = await store.mirror.save(row.block_name, fresh)
                    drift.repaired = True
                report.drift.append(drift)
            elif block.document_id != row.block_document_id:
                drift = Drift("document_id", row.id, row.identifier, "row points at another id")
                if repair:
                    row.block_document_id = block.document_id
                    drift.repaired = True
                report.drift.append(drift)
        for name, block in blocks.items():
            meta = block.block
            drift = Drift("missing_row", meta.integration_id, meta.identifier, f"block {name}")
            if meta.integration_id in known_ids or not meta.account_id:
                drift.detail += " (cannot rebuild: no account id or id clash)"
            elif repair:
                await _ensure_organization(session, meta.organization_id)
                sealed = store.vault.encrypt(
                    _encode(block.credentials), context=seal_context(meta.integration_id)
                )
                session.add(
                    ThirdParty(
                        id=meta.integration_id,
                        organization_id=meta.organization_id,
                        identifier=meta.identifier,
                        name=meta.account_name or meta.identifier,
                        internal_id=meta.account_id,
                        api_key=sealed.blob,
                        key_id=sealed.key_id,
                        block_name=name,
                        block_document_id=block.document_id,
                        status=IntegrationStatus.CONNECTED,
                        last_checked_at=utcnow(),
                    )
                )
                drift.repaired = True
            report.drift.append(drift)
    return report
