"""What every paid task shares: the cache policy (content + settings, never the provider) and
the task options that turn a provider chain into retries.

A cache key is a SHA-256 over the organization, the content and the settings that change the
output; the provider list is left out on purpose, so a result made by the second provider of
a chain is found again by a re-run whichever provider would have answered first. Results are
persisted by Prefect (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, default ``$PREFECT_HOME/storage``;
point it, or a storage block, at shared storage when several machines run workers).

The cache runs at the SERIALIZABLE isolation level with a file lock per key (next to the
results): two runs that need the same paid result at the same moment do the work once; the
second waits and reads what the first stored. Across machines, use a shared lock manager
(prefect-redis) the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.locking.filesystem import FileSystemLockManager
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

from arkyra.pipelines.fallback import retry_if_fallback_allowed

#: How long a paid result stays reusable (vendor result URLs may expire sooner: HeyGen 7 days).
CACHE_EXPIRATION = timedelta(days=6)

TaskT = TypeVar("TaskT", bound=Task[Any, Any])


def paid_task_options() -> dict[str, Any]:
    """Keyword arguments for ``@task`` on a paid, provider-chain task."""
    return {
        "retries": 0,  # set per call: len(chain) - 1, see with_chain()
        "retry_delay_seconds": 0,
        "retry_condition_fn": retry_if_fallback_allowed,
        "cache_expiration": CACHE_EXPIRATION,
        "persist_result": True,
    }


def with_chain(task: TaskT, chain_length: int, *, refresh: bool = False) -> TaskT:
    """The task with one retry per fallback provider (and a forced refresh when asked)."""
    options: dict[str, Any] = {"retries": max(chain_length - 1, 0)}
    if refresh:
        options["refresh_cache"] = True
    return task.with_options(**options)  # type: ignore[return-value]


class ResultsLockManager(FileSystemLockManager):
    """File locks under ``<results path>/.locks``, resolved when used (settings may change)."""

    def __init__(self) -> None:
        self._locks = {}

    @property  # type: ignore[override]
    def lock_files_directory(self) -> Path:
        return Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()).expanduser().resolve() / ".locks"

    @lock_files_directory.setter
    def lock_files_directory(self, value: Path) -> None:  # the base class assigns it
        pass


def paid_cache(kind: str, fingerprint: Callable[[dict[str, Any]], str]) -> CachePolicy:
    """The cache policy of a paid task: content key, one worker per key at a time."""
    return CacheKeyFnPolicy(cache_key_fn=cache_key(kind, fingerprint)).configure(
        isolation_level="SERIALIZABLE", lock_manager=ResultsLockManager()
    )


def cache_key(kind: str, fingerprint: Callable[[dict[str, Any]], str]) -> Callable[..., str]:
    """A ``cache_key_fn`` naming results ``<kind>-<fingerprint(parameters)>``."""

    def key(_context: Any, parameters: dict[str, Any]) -> str:
        return f"{kind}-{fingerprint(parameters)}"

    key.__name__ = f"{kind}_cache_key"
    return key
