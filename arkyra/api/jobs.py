"""An in-process runner for ``POST /third-party/{id}/submit``, persisted in the ``jobs`` table.

The API answers ``202 {job_id}`` at once and runs the provider's main action in a task. Each
change (running, progress, result, error) is written to the row, so any worker can answer
``GET /jobs/{id}``. The running process refreshes ``heartbeat_at``; a queued or running job
whose heartbeat went stale (the process died or restarted) is reported as ``interrupted``
instead of being lost or left "running" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from arkyra.api.logging import get_logger, redact, request_id_var
from arkyra.api.metrics import JOBS
from arkyra.db.models import Job, JobState, new_id, utcnow
from arkyra.db.session import Database
from arkyra.errors import ArkyraError, InvalidInput, NotFound, ProviderError
from arkyra.providers.jobs import RenderJob

log = get_logger("arkyra.api.jobs")

ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
#: The most jobs one listing returns.
MAX_RECENT_JOBS = 100

#: Reports progress (0..1) while the work runs.
ProgressCallback = Callable[[float | None], Awaitable[None]]
#: The work itself: returns a JSON-safe result.
Work = Callable[[ProgressCallback], Awaitable[Any]]


@dataclass(frozen=True)
class JobView:
    """What ``GET /jobs/{id}`` shows."""

    id: str
    integration_id: str
    identifier: str
    kind: str
    status: str
    progress: float | None
    result: Any
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Job, *, status: str | None = None) -> JobView:
        progress = row.progress
        return cls(
            id=row.id,
            integration_id=row.integration_id,
            identifier=row.identifier,
            kind=row.kind,
            status=status or row.status,
            progress=float(progress) if isinstance(progress, Decimal | float | int) else None,
            result=row.result,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


def describe_error(exc: BaseException, secrets: list[str] | None = None) -> dict[str, Any]:
    """A JSON-safe, secret-free description of why a job failed."""
    if isinstance(exc, ProviderError):
        info = exc.to_dict()
        info["message"] = redact(str(info.get("message") or ""), secrets or [])
        return info
    if isinstance(exc, InvalidInput):
        return {
            "error": "InvalidInput",
            "message": redact(str(exc), secrets or []),
            "errors": {k: redact(v, secrets or []) for k, v in exc.errors.items()},
        }
    if isinstance(exc, ArkyraError):
        return {"error": type(exc).__name__, "message": redact(str(exc), secrets or [])}
    return {"error": "internal", "message": "the job failed with an internal error"}


def result_progress(update: Any) -> float | None:
    """Progress from a provider's job update (a RenderJob), if it has one."""
    if isinstance(update, RenderJob):
        return update.progress
    return None


class JobRunner:
    """Starts jobs as asyncio tasks and keeps their rows current."""

    def __init__(
        self,
        db: Database,
        *,
        stale_after_seconds: float = 60.0,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.runner_id = uuid.uuid4().hex
        self.stale_after = timedelta(seconds=stale_after_seconds)
        self.heartbeat_seconds = heartbeat_seconds or max(0.05, stale_after_seconds / 3)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Mark jobs left active by a dead process as interrupted; start the heartbeat."""
        count = await self.interrupt_stale()
        self._heartbeat = asyncio.create_task(self._beat(), name="arkyra-jobs-heartbeat")
        return count

    async def close(self) -> None:
        """Cancel running jobs (their rows say ``interrupted``) and stop the heartbeat."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self, job_id: str) -> None:
        """Wait for a job this process runs (tests, graceful shutdown)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- submit and read ---------------------------------------------------------------------

    async def submit(
        self,
        *,
        organization_id: str,
        integration_id: str,
        identifier: str,
        work: Work,
        kind: str = "submit",
        secrets: list[str] | None = None,
    ) -> str:
        """Record a queued job and start it; returns the job id at once."""
        job_id = new_id()
        async with self.db.transaction() as session:
            session.add(
                Job(
                    id=job_id,
                    organization_id=organization_id,
                    integration_id=integration_id,
                    identifier=identifier,
                    kind=kind,
                    status=JobState.QUEUED.value,
                    runner_id=self.runner_id,
                    heartbeat_at=utcnow(),
                )
            )
        request_id = request_id_var.get()
        self._tasks[job_id] = asyncio.create_task(
            self._run(job_id, identifier, work, secrets or [], request_id),
            name=f"arkyra-job-{job_id}",
        )
        return job_id

    async def get(self, organization_id: str, job_id: str) -> JobView:
        """The job if it belongs to ``organization_id``; ``NotFound`` otherwise."""
        async with self.db.sessions() as session:
            row = await session.scalar(
                select(Job).where(Job.id == job_id, Job.organization_id == organization_id)
            )
            if row is None:
                raise NotFound(f"no job {job_id!r} in this organization")
            if self._is_stale(row):
                await self._mark_interrupted([row.id])
                return JobView.of(row, status=JobState.INTERRUPTED.value)
            return JobView.of(row)

    async def recent(
        self,
        organization_id: str,
        *,
        integration_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
    ) -> list[JobView]:
        """This organization's jobs, newest first; stale active ones reported as interrupted."""
        query = (
            select(Job)
            .where(Job.organization_id == organization_id)
            .order_by(Job.created_at.desc(), Job.id)
            .limit(max(1, min(limit, MAX_RECENT_JOBS)))
        )
        if integration_id is not None:
            query = query.where(Job.integration_id == integration_id)
        if status is not None:
            query = query.where(Job.status == status)
        async with self.db.sessions() as session:
            rows = list(await session.scalars(query))
        stale = [row.id for row in rows if self._is_stale(row)]
        await self._mark_interrupted(stale)
        return [
            JobView.of(row, status=JobState.INTERRUPTED.value if row.id in stale else None)
            for row in rows
        ]

    # -- internals ---------------------------------------------------------------------------

    def _is_stale(self, row: Job) -> bool:
        if row.status not in ACTIVE_STATES or row.id in self._tasks:
            return False
        beat = row.heartbeat_at
        if beat is None:
            return True
        if beat.tzinfo is None:  # SQLite returns naive datetimes
            beat = beat.replace(tzinfo=utcnow().tzinfo)
        return utcnow() - beat > self.stale_after

    async def interrupt_stale(self) -> int:
        """Every active job with a stale heartbeat becomes ``interrupted``; returns how many."""
        cutoff = utcnow() - self.stale_after
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(Job.id).where(
                    Job.status.in_(ACTIVE_STATES),
                    (Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < cutoff),
                )
            )
            ids = [job_id for job_id in rows if job_id not in self._tasks]
        await self._mark_interrupted(ids)
        return len(ids)

    async def _mark_interrupted(self, ids: list[str]) -> None:
        if not ids:
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(Job.id.in_(ids), Job.status.in_(ACTIVE_STATES))
                .values(
                    status=JobState.INTERRUPTED.value,
                    error={
                        "error": "interrupted",
                        "message": "the API process running this job stopped; submit it again",
                    },
                    finished_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        for _ in ids:
            JOBS.labels("unknown", JobState.INTERRUPTED.value).inc()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            if not self._tasks:
                continue
            try:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(Job)
                        .where(Job.id.in_(list(self._tasks)), Job.status.in_(ACTIVE_STATES))
                        .values(heartbeat_at=utcnow())
                    )
            except Exception as exc:  # a missed beat must not kill the runner
                log.warning("job heartbeat failed: %s", type(exc).__name__)

    async def _update(self, job_id: str, **values: Any) -> None:
        values.setdefault("heartbeat_at", utcnow())
        values["updated_at"] = utcnow()
        async with self.db.transaction() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(**values))

    async def _run(
        self, job_id: str, identifier: str, work: Work, secrets: list[str], request_id: str | None
    ) -> None:
        request_id_var.set(request_id)
        last_progress: list[float | None] = [None]

        async def progress(value: float | None) -> None:
            if value is None or value == last_progress[0]:
                return
            last_progress[0] = value
            await self._update(job_id, progress=Decimal(str(round(max(0.0, min(1.0, value)), 4))))

        state = JobState.FAILED
        try:
            await self._update(job_id, status=JobState.RUNNING.value)
            result = await work(progress)
            await self._update(
                job_id,
                status=JobState.SUCCEEDED.value,
                progress=Decimal(1),
                result=result,
                finished_at=utcnow(),
            )
            state = JobState.SUCCEEDED
        except asyncio.CancelledError:
            state = JobState.INTERRUPTED
            await asyncio.shield(self._finish_interrupted(job_id))
            raise
        except Exception as exc:
            if not isinstance(exc, ArkyraError):
                log.error("job %s failed unexpectedly", job_id, exc_info=True)
            else:
                log.info("job %s failed: %s", job_id, type(exc).__name__)
            await self._update(
                job_id,
                status=JobState.FAILED.value,
                error=describe_error(exc, secrets),
                finished_at=utcnow(),
            )
        finally:
            self._tasks.pop(job_id, None)
            JOBS.labels(identifier, state.value).inc()

    async def _finish_interrupted(self, job_id: str) -> None:
        try:
            await self._update(
                job_id,
                status=JobState.INTERRUPTED.value,
                error={"error": "interrupted", "message": "the API shut down while it ran"},
                finished_at=utcnow(),
            )
        except Exception as exc:
            log.warning("could not record job %s as interrupted: %s", job_id, type(exc).__name__)


def to_jsonable(value: Any) -> Any:
    """Results as JSON: pydantic models via ``model_dump(mode="json")``, DataFrames as records."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(
            mode="json", exclude={"raw"} if "raw" in type(value).model_fields else None
        )
    if _is_dataframe(value):
        import json

        return json.loads(value.to_json(orient="records", date_format="iso"))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _is_dataframe(value: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    return isinstance(value, pd.DataFrame)
