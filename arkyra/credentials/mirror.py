"""The Prefect side of the credential store: save, load, delete and list credential blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from arkyra.blocks.credentials import ALL_BLOCK_TYPES, ArkyraCredentials, block_type_for


@dataclass(frozen=True)
class MirroredBlock:
    name: str
    document_id: str
    block: ArkyraCredentials

    @property
    def credentials(self) -> dict[str, str]:
        return self.block.credentials()


class BlockMirror(Protocol):
    """What the credential store needs from Prefect (a fake can stand in for it)."""

    async def save(self, name: str, block: ArkyraCredentials) -> str: ...

    async def delete(self, name: str, identifier: str) -> bool: ...

    async def list_blocks(self) -> list[MirroredBlock]: ...


class PrefectBlockMirror:
    """Credential blocks stored on the Prefect API the environment points at."""

    prefix = "tp-"

    async def save(self, name: str, block: ArkyraCredentials) -> str:
        document_id = await block.asave(name, overwrite=True)
        return str(document_id)

    async def delete(self, name: str, identifier: str) -> bool:
        """Delete the block; ``False`` when it was already gone."""
        try:
            await block_type_for(identifier).adelete(name)
        except (ValueError, ObjectNotFound):
            return False
        return True

    async def list_blocks(self) -> list[MirroredBlock]:
        """Every credentials block this project wrote (names ``tp-...``), secrets included."""
        slugs = {cls.get_block_type_slug(): cls for cls in ALL_BLOCK_TYPES}
        found: list[MirroredBlock] = []
        async with get_client() as client:
            offset = 0
            while True:
                page = await client.read_block_documents(
                    offset=offset, limit=200, include_secrets=True
                )
                for doc in page:
                    slug = doc.block_type.slug if doc.block_type else None
                    if slug not in slugs or not (doc.name or "").startswith(self.prefix):
                        continue
                    block = slugs[slug].model_validate(doc.data)
                    found.append(MirroredBlock(doc.name or "", str(doc.id), block))
                if len(page) < 200:
                    return found
                offset += 200
