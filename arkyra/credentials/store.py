"""CredentialStore: the one way integration credentials are written or read.

The secret is sealed into the ``third_party`` row (AES-GCM, bound to the row id) and mirrored into a
Prefect block; both are written as one unit of work, so a failure in either leaves neither.
Connecting the same account again updates its integration instead of adding a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from arkyra.blocks.credentials import block_name_for, build_block
from arkyra.config import Settings
from arkyra.credentials.mirror import BlockMirror
from arkyra.db.models import IntegrationStatus, Organization, ThirdParty, new_id, utcnow
from arkyra.db.session import Database
from arkyra.errors import ArkyraError, DecryptionFailed, InvalidInput, NotFound
from arkyra.providers import AccountInfo, ThirdPartyProvider, get_provider
from arkyra.security.vault import Sealed, Vault

ProviderFactory = Callable[[str], ThirdPartyProvider]


class NeedsReconnect(ArkyraError):
    """The integration's stored secret cannot be used; the user must connect it again."""


@dataclass(frozen=True)
class Integration:
    """What callers may see of an integration: never the secret."""

    id: str
    organization_id: str
    identifier: str
    name: str
    status: str
    status_reason: str | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    @classmethod
    def of(cls, row: ThirdParty) -> Integration:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            identifier=row.identifier,
            name=row.name,
            status=row.status,
            status_reason=row.status_reason,
            last_checked_at=row.last_checked_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted_at=row.deleted_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identifier": self.identifier,
            "name": self.name,
            "status": self.status,
            "status_reason": self.status_reason,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
        }


def seal_context(row_id: str) -> bytes:
    """Associated data binding a ciphertext to its row."""
    return f"arkyra:third_party:{row_id}".encode()


class CredentialStore:
    """Connect, list, remove and unlock integrations for an organization."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        mirror: BlockMirror,
        *,
        settings: Settings,
        provider_factory: ProviderFactory | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.mirror = mirror
        self.settings = settings
        self._provider_factory = provider_factory or (
            lambda identifier: get_provider(identifier, settings=settings)
        )

    # -- writing ----------------------------------------------------------------------------

    def provider(self, identifier: str) -> ThirdPartyProvider:
        """A provider instance as the store makes them (for :meth:`connect`'s ``provider``)."""
        return self._provider_factory(identifier)

    async def connect(
        self,
        organization_id: str,
        identifier: str,
        fields: Mapping[str, Any],
        *,
        provider: ThirdPartyProvider | None = None,
    ) -> Integration:
        """Validate the fields, prove them with the vendor, then store row and block together.

        Pass ``provider`` (from :meth:`provider`) to read what validation left on the instance
        afterwards, such as a generated webhook secret."""
        organization_id = _clean_org(organization_id)
        provider = provider or self._provider_factory(identifier)
        credentials = provider.validate_credentials(fields)
        account = await provider.check_connection(credentials)
        try:
            return await self._store(organization_id, identifier, credentials, account)
        except IntegrityError:
            # A concurrent connect of the same account won the insert; update it instead.
            return await self._store(organization_id, identifier, credentials, account)

    async def _store(
        self,
        organization_id: str,
        identifier: str,
        credentials: dict[str, str],
        account: AccountInfo,
    ) -> Integration:
        """Row and block as one unit: a failed block write rolls the row back, and a failed
        commit puts the block back as it was."""
        undo: tuple[str, str, str, str, dict[str, str] | None] | None = None
        try:
            async with self.db.transaction() as session:
                await _ensure_organization(session, organization_id)
                row = await session.scalar(
                    select(ThirdParty).where(
                        ThirdParty.organization_id == organization_id,
                        ThirdParty.identifier == identifier,
                        ThirdParty.internal_id == account.id,
                    )
                )
                previous: dict[str, str] | None = None
                if row is None:
                    row_id = new_id()
                    row = ThirdParty(
                        id=row_id,
                        organization_id=organization_id,
                        identifier=identifier,
                        internal_id=account.id,
                        block_name=block_name_for(row_id),
                    )
                    session.add(row)
                elif row.is_active:
                    previous = self._open_or_none(row)
                sealed = self.vault.encrypt(_encode(credentials), context=seal_context(row.id))
                row.name = account.name[:200]
                row.api_key = sealed.blob
                row.key_id = sealed.key_id
                row.status = IntegrationStatus.CONNECTED
                row.status_reason = None
                row.last_checked_at = utcnow()
                row.deleted_at = None
                await session.flush()
                block = build_block(
                    identifier,
                    organization_id=organization_id,
                    integration_id=row.id,
                    credentials=credentials,
                    account_id=account.id,
                    account_name=account.name,
                )
                row.block_document_id = await self.mirror.save(row.block_name, block)
                undo = (row.id, row.block_name, row.internal_id, row.name, previous)
                await session.flush()
                integration = Integration.of(row)
        except BaseException:
            if undo is not None:
                await self._undo_block(organization_id, identifier, *undo)
            raise
        return integration

    async def _undo_block(
        self,
        organization_id: str,
        identifier: str,
        integration_id: str,
        block_name: str,
        account_id: str,
        account_name: str,
        previous: dict[str, str] | None,
    ) -> None:
        """Put the block back as it was before a write whose row did not commit."""
        if previous is None:
            await self.mirror.delete(block_name, identifier)
            return
        block = build_block(
            identifier,
            organization_id=organization_id,
            integration_id=integration_id,
            credentials=previous,
            account_id=account_id,
            account_name=account_name,
        )
        await self.mirror.save(block_name, block)

    async def remove(self, organization_id: str, integration_id: str) -> None:
        """Soft delete: the block goes, the row keeps its history (its secret is wiped)."""
        async with self.db.transaction() as session:
            row = await self._active_row(session, organization_id, integration_id)
            row.deleted_at = utcnow()
            row.api_key = b""
            row.key_id = ""
            await session.flush()
            await self.mirror.delete(row.block_name, row.identifier)

    # -- reading ----------------------------------------------------------------------------

    async def list(self, organization_id: str) -> list[Integration]:
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(ThirdParty)
                .where(
                    ThirdParty.organization_id == _clean_org(organization_id),
                    ThirdParty.deleted_at.is_(None),
                )
                .order_by(ThirdParty.identifier, ThirdParty.created_at)
            )
            return [Integration.of(row) for row in rows]

    async def get(self, organization_id: str, integration_id: str) -> Integration:
        async with self.db.sessions() as session:
            return Integration.of(await self._active_row(session, organization_id, integration_id))

    async def credentials_for_use(
        self, organization_id: str, integration_id: str
    ) -> tuple[Integration, dict[str, str]]:
        """The decrypted credentials; a value that will not open marks ``needs_reconnect``."""
        async with self.db.sessions() as session:
            row = await self._active_row(session, organization_id, integration_id)
            if row.status == IntegrationStatus.NEEDS_RECONNECT:
                raise NeedsReconnect(
                    f"integration {row.id} ({row.identifier}) needs to be connected again: "
                    f"{row.status_reason or 'its credentials stopped working'}"
                )
            try:
                credentials = self.open_row(row)
            except DecryptionFailed as exc:
                reason = f"stored credentials could not be decrypted ({exc})"
                await self.mark(row.id, IntegrationStatus.NEEDS_RECONNECT, reason)
                raise NeedsReconnect(
                    f"integration {row.id} ({row.identifier}) needs to be connected again: {reason}"
                ) from None
            return Integration.of(row), credentials

    async def mark(self, integration_id: str, status: IntegrationStatus, reason: str) -> None:
        """Record an integration's health (e.g. ``needs_reconnect`` after a 401).

        Entering ``needs_reconnect`` alerts the organization (see :mod:`arkyra.alerts`)."""
        newly_broken: str | None = None
        async with self.db.transaction() as session:
            row = await session.get(ThirdParty, integration_id)
            if row is not None:
                entering = status != row.status and status == IntegrationStatus.NEEDS_RECONNECT
                if entering:
                    newly_broken = row.organization_id
                row.status = status
                row.status_reason = reason[:1000]
                row.last_checked_at = utcnow()
        if newly_broken is not None:
            from arkyra import alerts

            await alerts.integration_needs_reconnect(newly_broken, integration_id, reason)

    # -- helpers ----------------------------------------------------------------------------

    def open_row(self, row: ThirdParty) -> dict[str, str]:
        """Decrypt a row's credentials; ``DecryptionFailed`` if they will not open."""
        plaintext = self.vault.decrypt(
            Sealed(row.key_id, row.api_key), context=seal_context(row.id)
        )
        try:
            value = json.loads(plaintext)
        except ValueError:
            raise DecryptionFailed("decrypted value is not a credential document") from None
        if not isinstance(value, dict):
            raise DecryptionFailed("decrypted value is not a credential document")
        return {str(k): str(v) for k, v in value.items()}

    def _open_or_none(self, row: ThirdParty) -> dict[str, str] | None:
        try:
            return self.open_row(row)
        except DecryptionFailed:
            return None

    @staticmethod
    async def _active_row(
        session: AsyncSession, organization_id: str, integration_id: str
    ) -> ThirdParty:
        row = await session.scalar(
            select(ThirdParty).where(
                ThirdParty.id == integration_id,
                ThirdParty.organization_id == organization_id,
                ThirdParty.deleted_at.is_(None),
            )
        )
        if row is None:
            raise NotFound(f"no integration {integration_id!r} in this organization")
        return row


def _encode(credentials: Mapping[str, str]) -> bytes:
    return json.dumps(dict(credentials), separators=(",", ":"), sort_keys=True).encode()


def _clean_org(organization_id: str) -> str:
    value = (organization_id or "").strip()
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise InvalidInput(
            "organization id must be 1-64 characters: letters, digits, '-', '_' or '.'",
            {"organization_id": "invalid"},
        )
    return value


async def _ensure_organization(session: AsyncSession, organization_id: str) -> None:
    if await session.get(Organization, organization_id) is None:
        session.add(Organization(id=organization_id, name=organization_id))
        await session.flush()
