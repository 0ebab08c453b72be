"""Provider fallback as Prefect task retries (design.md section 5).

A paid task is called with ``retries = len(chain) - 1``; each attempt reads
``task_run.run_count`` to pick its provider, and :func:`retry_if_fallback_allowed` lets the next
attempt run only when the error's class allows fallback (``arkyra.errors``: quota, credentials,
rate limits, transient failures, context length). Content refusals and bad requests stop the
chain at once. Same-provider retries of transient errors happen inside one attempt
(``ThirdPartyProvider.request`` uses tenacity).

Every attempt is logged and remembered per task run, so the step's result (and the run's
summary artifact) shows the chain as it ran, e.g. ``glm ✗ → openai ✓``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from threading import Lock
from typing import Any, TypeVar
from uuid import UUID

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.logging import get_run_logger
from prefect.runtime import task_run as current_task_run

from arkyra.errors import ProviderError
from arkyra.pipelines.models import Attempt

T = TypeVar("T")

_MAX_TRACKED_RUNS = 10_000
_attempts: OrderedDict[str, list[Attempt]] = OrderedDict()
_lock = Lock()


def attempt_number() -> int:
    """1 on the first attempt of a task run, 2 on its first retry, ...; 1 outside a task."""
    return max(int(current_task_run.run_count or 0), 1)


def pick(chain: Sequence[T]) -> tuple[int, T]:
    """The attempt number and the chain entry this attempt uses."""
    if not chain:
        raise ValueError("an empty provider chain has nothing to try")
    number = attempt_number()
    return number, chain[min(number, len(chain)) - 1]


def last_in_chain(chain: Sequence[Any]) -> bool:
    """Whether this attempt uses the chain's last provider (no fallback is left after it)."""
    return attempt_number() >= len(chain)


def fallback_allowed(exc: BaseException | None) -> bool:
    """Whether the next provider may succeed where this error stopped the current one."""
    return isinstance(exc, ProviderError) and type(exc).allows_fallback


def describe(exc: BaseException) -> tuple[str, str]:
    """The error's class name and a message that never carries a secret."""
    message = exc.message if isinstance(exc, ProviderError) else str(exc)
    return type(exc).__name__, message[:300]


async def retry_if_fallback_allowed(task: Task[Any, Any], task_run: TaskRun, state: State) -> bool:
    """``retry_condition_fn`` for chain tasks: retry only for errors that allow fallback."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        result = await state.aresult(raise_on_failure=False)
        exc = result if isinstance(result, BaseException) else None
    allowed = fallback_allowed(exc)
    if not allowed and exc is not None:
        name, _ = describe(exc)
        get_run_logger().warning("%s does not allow fallback: the chain stops here", name)
    return allowed


def record_attempt(provider: str, exc: BaseException | None = None) -> Attempt:
    """Remember and log one attempt of the running task (``exc`` None means it succeeded)."""
    number = attempt_number()
    if exc is None:
        attempt = Attempt(number=number, provider=provider, ok=True)
        get_run_logger().info("attempt %d: %s succeeded", number, provider)
    else:
        error, message = describe(exc)
        attempt = Attempt(number=number, provider=provider, ok=False, error=error, message=message)
        get_run_logger().warning("attempt %d: %s failed with %s: %s", number, provider, error,
                                 message)  # fmt: skip
    key = str(current_task_run.id)
    with _lock:
        history = _attempts.setdefault(key, [])
        history[:] = [a for a in history if a.number != number] + [attempt]
        _attempts.move_to_end(key)
        while len(_attempts) > _MAX_TRACKED_RUNS:
            _attempts.popitem(last=False)
    return attempt


def attempts_of(task_run_id: UUID | str | None) -> list[Attempt]:
    """Every attempt recorded for a task run (in this process), oldest first."""
    if task_run_id is None:
        return []
    with _lock:
        return sorted(_attempts.get(str(task_run_id), []), key=lambda a: a.number)


def current_attempts() -> list[Attempt]:
    return attempts_of(current_task_run.id)
