"""Credentials: the ThirdParty table and Prefect blocks kept in step by one store."""

from arkyra.config import Settings
from arkyra.credentials.mirror import BlockMirror, PrefectBlockMirror
from arkyra.credentials.store import CredentialStore, Integration, NeedsReconnect
from arkyra.db.session import Database
from arkyra.security.vault import Vault


def store_from_settings(
    settings: Settings, *, db: Database | None = None, mirror: BlockMirror | None = None
) -> CredentialStore:
    """The credential store wired from settings (database, vault, Prefect blocks)."""
    return CredentialStore(
        db or Database.from_settings(settings),
        Vault.from_settings(settings),
        mirror or PrefectBlockMirror(),
        settings=settings,
    )


__all__ = [
    "BlockMirror",
    "CredentialStore",
    "Integration",
    "NeedsReconnect",
    "PrefectBlockMirror",
    "store_from_settings",
]
