"""Per-provider concurrency limits: Prefect global concurrency limits, created on first use.

Every provider call holds one slot of ``arkyra-provider-<identifier>`` with ``strict=True``, so a
missing limit is an error rather than a silent "unthrottled" warning; that is why the limit is
created (with a default size) before the first slot is taken. A flow creates the limits named
in its ``provider_limits`` option up front, with the sizes given there. Limits live on the
Prefect server, so they hold across every worker.

On a SQLite Prefect server (development, tests, the demo) concurrent slot writes sometimes meet
"database is locked"; the client then retries after about two seconds. PostgreSQL does not
have this problem (deployments/README.md). Where every run is in one process anyway (a single
``arkyra serve`` on SQLite, the sandbox benchmark), ``PipelineRuntime.slot_scope = "process"``
keeps the same limits as in-process semaphores and leaves the server out of every call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

#: Concurrent calls per provider when nothing else is configured (vendor plan limits).
DEFAULT_LIMITS: dict[str, int] = {
    "heygen": 3,
    "synthesia": 2,
    "d-id": 3,
    "runway": 2,
    "elevenlabs": 4,
    "murf": 4,
    "playht": 2,
    "openai": 8,
    "glm": 8,
    "claude": 8,
    "mistral": 8,
}
FALLBACK_LIMIT = 4
SLOT_TIMEOUT_SECONDS = 1800.0

_ensured: set[str] = set()
_sizes: dict[str, int] = {}
_local: dict[tuple[int, str], asyncio.Semaphore] = {}


def limit_name(identifier: str) -> str:
    return f"arkyra-provider-{identifier}"


async def ensure_limit(identifier: str, size: int | None = None) -> str:
    """Create the provider's limit if it is missing; with ``size``, set it to that size."""
    name = limit_name(identifier)
    if size is not None:
        _sizes[identifier] = size
    if _process_scope():
        return name
    if name in _ensured and size is None:
        return name
    async with get_client() as client:
        if size is not None:
            await client.upsert_global_concurrency_limit_by_name(name, size)
        else:
            try:
                await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                await _create(client, name, DEFAULT_LIMITS.get(identifier, FALLBACK_LIMIT))
    _ensured.add(name)
    return name


async def _create(client: PrefectClient, name: str, size: int) -> None:
    """Create a limit; losing the race to a concurrent creator is fine (SQLite answers 500)."""
    try:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=size)
        )
    except (ObjectAlreadyExists, httpx.HTTPStatusError):
        await client.read_global_concurrency_limit_by_name(name)  # raises if it truly failed


async def ensure_limits(identifiers: Iterable[str], sizes: Mapping[str, int]) -> None:
    """Before a run fans out: create every provider limit it will use, one at a time, and
    resize those the run was configured with."""
    for identifier in dict.fromkeys([*identifiers, *sizes]):
        await ensure_limit(identifier, sizes.get(identifier))


@contextlib.asynccontextmanager
async def provider_slot(identifier: str) -> AsyncIterator[None]:
    """Hold one slot of the provider's limit (waiting for one if all are taken).

    A limit deleted while this process was running is created again, once.
    """
    if _process_scope():
        async with _local_semaphore(identifier):
            yield
        return
    name = await ensure_limit(identifier)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(_slot(name))
        except ConcurrencySlotAcquisitionError as exc:
            if "must be created" not in str(exc):
                raise
            _ensured.discard(name)
            await ensure_limit(identifier)
            await stack.enter_async_context(_slot(name))
        yield


def _slot(name: str) -> contextlib.AbstractAsyncContextManager[None]:
    return concurrency(name, occupy=1, strict=True, timeout_seconds=SLOT_TIMEOUT_SECONDS)


def _process_scope() -> bool:
    from arkyra.pipelines.runtime import get_runtime  # the runtime imports this package

    return get_runtime().slot_scope == "process"


def _local_semaphore(identifier: str) -> asyncio.Semaphore:
    """This process's semaphore for the provider (one per event loop: semaphores bind to it)."""
    key = (id(asyncio.get_running_loop()), identifier)
    if key not in _local:
        size = _sizes.get(identifier) or DEFAULT_LIMITS.get(identifier, FALLBACK_LIMIT)
        _local[key] = asyncio.Semaphore(size)
    return _local[key]
