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

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.context import TaskRunContext
from prefect.locking.filesystem import FileSystemLockManager
from prefect.logging import get_logger
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


def results_path() -> Path:
    """Where persisted results live (resolved when used: settings may change)."""
    return Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()).expanduser().resolve()


class ResultsLockManager(FileSystemLockManager):
    """File locks under ``<results path>/.locks`` that a killed process does not keep.

    Prefect's file locks never expire unless given a hold timeout, so a worker killed while
    it held one would block every later run of that key. Here each lock records the host and
    process that took it, and a lock whose process is gone on this host is stale and broken.
    (A lock taken on another machine is left alone: use a shared lock manager there.)
    """

    def __init__(self) -> None:
        self._locks = {}

    @property  # type: ignore[override]
    def lock_files_directory(self) -> Path:
        return results_path() / ".locks"

    @lock_files_directory.setter
    def lock_files_directory(self, value: Path) -> None:  # the base class assigns it
        pass

    @staticmethod
    def _owner(holder: str) -> str:
        suffix = f"|{socket.gethostname()}|{os.getpid()}"
        return holder if holder.endswith(suffix) else holder + suffix

    def acquire_lock(self, key: str, holder: str, *args: Any, **kwargs: Any) -> bool:
        return super().acquire_lock(key, self._owner(holder), *args, **kwargs)

    async def aacquire_lock(self, key: str, holder: str, *args: Any, **kwargs: Any) -> bool:
        return await super().aacquire_lock(key, self._owner(holder), *args, **kwargs)

    def release_lock(self, key: str, holder: str) -> None:
        super().release_lock(key, self._owner(holder))

    def is_lock_holder(self, key: str, holder: str) -> bool:
        return super().is_lock_holder(key, holder) or super().is_lock_holder(
            key, self._owner(holder)
        )

    def _get_lock_info(self, key: str, use_cache: bool = True) -> Any:
        try:
            return super()._get_lock_info(key, use_cache=use_cache)
        except ValueError:
            return self._torn_lock(key)

    async def _aget_lock_info(self, key: str, use_cache: bool = True) -> Any:
        try:
            return await super()._aget_lock_info(key, use_cache=use_cache)
        except ValueError:
            return self._torn_lock(key)

    def _torn_lock(self, key: str) -> dict[str, Any] | None:
        """A lock file that does not parse: Prefect creates it empty, then writes it.

        Young, it is being written: treat the key as locked by someone unknown. Older than a
        few seconds, its writer was killed in between: remove it, or the key stays locked
        forever.
        """
        path = Path(self._lock_path_for_key(key))
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        if age < TORN_LOCK_GRACE_SECONDS:
            return {"holder": "", "expiration": None, "path": path}
        path.unlink(missing_ok=True)
        self._locks.pop(key, None)
        return None

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        if not super().is_locked(key, use_cache=use_cache):
            return False
        info = self._get_lock_info(key, use_cache=use_cache)
        if info is None or not _held_by_dead_process(str(info.get("holder", ""))):
            return True
        Path(info["path"]).unlink(missing_ok=True)
        self._locks.pop(key, None)
        return False


#: How long an unreadable lock file may be "being written" before it counts as abandoned.
TORN_LOCK_GRACE_SECONDS = 5.0


def _held_by_dead_process(owner: str) -> bool:
    """Whether ``owner`` (``holder|host|pid``) names a process of this host that has exited."""
    _, _, rest = owner.partition("|")
    host, _, pid = rest.rpartition("|")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class PendingNote:
    """What a paid task noted for a cache key: the job it submitted, or that it was submitting.

    ``job_id`` is ``None`` while the request is on its way: a worker stopped then leaves the
    next run unsure whether the vendor started the job. ``reference`` is the client reference
    sent with the request (``RenderProvider.reference_field``), by which the vendor can be
    asked; ``since`` the wall-clock time the note was written.
    """

    provider: str
    job_id: str | None
    reference: str | None
    since: float


class PendingJobs:
    """A note, next to the results, of the vendor job a paid task submitted for a cache key.

    A worker killed while a render runs loses only its process: the job goes on at the vendor
    (and is billed). The next run of the same content finds the note and waits for that job
    instead of submitting (and paying for) another one. The note is written twice: before the
    request is sent (:meth:`intend`) and once the vendor has named the job (:meth:`remember`),
    so a worker stopped in between is noticed too. It stays after the job succeeded, because
    the worker may die before Prefect has stored the result; it is ignored when the run asks
    for a refresh or once it is older than the cache, and dropped when the job failed or the
    vendor certainly refused the request.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.path = results_path() / ".jobs" / f"{key}.json"

    def note(self, provider: str) -> PendingNote | None:
        """The note for ``provider`` on this key, if it may still be used."""
        if _refresh_requested():
            return None
        try:
            modified = self.path.stat().st_mtime
            if time.time() - modified > CACHE_EXPIRATION.total_seconds():
                return None
            raw = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("provider") != provider:
            return None
        job_id, reference = raw.get("job_id"), raw.get("reference")
        return PendingNote(
            provider=provider,
            job_id=str(job_id) if job_id else None,
            reference=str(reference) if reference else None,
            since=float(raw.get("since") or modified),
        )

    def intend(self, provider: str, reference: str | None) -> None:
        """Note, before sending, that a request to ``provider`` is on its way."""
        self.remember(provider, None, reference)

    def remember(self, provider: str, job_id: str | None, reference: str | None = None) -> None:
        """Note the job the vendor started (``None``: not named yet)."""
        note = {"provider": provider, "job_id": job_id, "reference": reference,
                "since": time.time()}  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(note))
        partial.replace(self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def set_aside_torn_result(key: str) -> None:
    """Move away a result file that a killed worker left half-written.

    Prefect writes result files in place, so a worker killed mid-write leaves one that no
    later run can read: the task would fail on it forever. Unless a live process holds the key's
    lock (it may be writing right now), an unreadable file is renamed ``<key>.torn-<time>``; the
    task then runs again and resumes the vendor job noted by :class:`PendingJobs`, so nothing is
    paid twice.
    """
    path = results_path() / key
    try:
        json.loads(path.read_bytes())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        if ResultsLockManager().is_locked(key):
            return
        path.rename(path.with_name(f"{key}.torn-{int(time.time())}"))
        get_logger("arkyra.tasks").warning(
            "result %s was cut off by a stopped worker; it is set aside and redone", key
        )


def _refresh_requested() -> bool:
    """Whether the running task was asked to do its work again (``refresh_cache``)."""
    context = TaskRunContext.get()
    return bool(context is not None and context.task.refresh_cache)


def paid_cache(kind: str, fingerprint: Callable[[dict[str, Any]], str]) -> CachePolicy:
    """The cache policy of a paid task: content key, one worker per key at a time."""
    return CacheKeyFnPolicy(cache_key_fn=cache_key(kind, fingerprint)).configure(
        isolation_level="SERIALIZABLE", lock_manager=ResultsLockManager()
    )


def cache_key(kind: str, fingerprint: Callable[[dict[str, Any]], str]) -> Callable[..., str]:
    """A ``cache_key_fn`` naming results ``<kind>-<fingerprint(parameters)>``."""

    def key(_context: Any, parameters: dict[str, Any]) -> str:
        name = f"{kind}-{fingerprint(parameters)}"
        set_aside_torn_result(name)
        return name

    key.__name__ = f"{kind}_cache_key"
    return key
