"""One shape for every asynchronous render or synthesis job, and one polling loop for all.

Vendors name their states differently (HeyGen ``waiting``, Runway ``THROTTLED``, D-ID ``done``);
each provider maps them to :class:`JobStatus` and keeps the vendor's own value and reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, Field

from arkyra.errors import JobDeadlineExceeded, JobFailed
from arkyra.providers.base import ThirdPartyProvider

#: ``find_submitted`` reads at most this many pages of this many recent jobs.
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 10


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class RenderJob(BaseModel):
    """A vendor job as we track it: id, normalised status, progress, result and its expiry."""

    provider: str
    id: str
    status: JobStatus
    vendor_status: str = ""
    progress: float | None = Field(default=None, ge=0, le=1)
    result_url: str | None = None
    result_expires_at: datetime | None = None
    thumbnail_url: str | None = None
    duration_seconds: float | None = None
    failure_reason: str | None = None
    failure_code: str | None = None
    raw: dict = Field(default_factory=dict, repr=False)


async def poll_job(
    fetch: Callable[[], Awaitable[RenderJob]],
    *,
    initial_delay: float,
    max_delay: float,
    deadline_seconds: float,
    on_update: Callable[[RenderJob], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RenderJob:
    """Poll until the job is final, backing off (x1.5) to ``max_delay``; hard deadline.

    A failed job raises :class:`JobFailed` with the vendor's reason; running out of time raises
    :class:`JobDeadlineExceeded` (the job id is kept so a later check can collect it).
    """
    start = clock()
    delay = initial_delay
    while True:
        job = await fetch()
        if on_update is not None:
            on_update(job)
        if job.status is JobStatus.SUCCEEDED or job.status is JobStatus.CANCELLED:
            return job
        if job.status is JobStatus.FAILED:
            raise JobFailed(
                job.failure_reason or f"job {job.id} failed",
                provider=job.provider,
                code=job.failure_code,
                details={"job_id": job.id, "vendor_status": job.vendor_status},
            )
        remaining = deadline_seconds - (clock() - start)
        if remaining <= 0:
            raise JobDeadlineExceeded(
                f"job {job.id} still {job.vendor_status or job.status} after "
                f"{deadline_seconds:g} s",
                provider=job.provider,
                details={"job_id": job.id},
            )
        await sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)


class RenderProvider(ThirdPartyProvider):
    """A provider whose main action starts a vendor job: ``wait_for_job`` is written once here,
    over the provider's own ``get_job``."""

    #: The request field that carries a client reference the vendor keeps with the job (HeyGen
    #: ``callback_id``), when :meth:`find_submitted` can search by it; ``None`` when it cannot.
    reference_field: ClassVar[str | None] = None

    async def get_job(self, credentials: Mapping[str, str], job_id: str) -> RenderJob:
        """The job's current state, mapped to :class:`RenderJob`."""
        raise NotImplementedError

    async def find_submitted(
        self, credentials: Mapping[str, str], reference: str, since: float
    ) -> str | None:
        """The id of a job this account started at or after ``since`` (unix seconds) whose
        ``reference_field`` was ``reference``, or ``None`` when there is none.

        A worker stopped between sending a paid request and noting the job id leaves the
        next run unsure whether the vendor started it; this answers that without paying.
        Only providers with a ``reference_field`` implement it.
        """
        raise NotImplementedError(f"{self.identifier} cannot look up a job by reference")

    async def wait_for_job(
        self,
        credentials: Mapping[str, str],
        job_id: str,
        *,
        deadline_seconds: float | None = None,
        on_update: Callable[[RenderJob], None] | None = None,
    ) -> RenderJob:
        """Poll until the job is final; ``JobFailed`` or ``JobDeadlineExceeded`` otherwise."""
        return await poll_job(
            lambda: self.get_job(credentials, job_id),
            initial_delay=self.settings.job_poll_initial_seconds,
            max_delay=self.settings.job_poll_max_seconds,
            deadline_seconds=(
                self.settings.job_deadline_seconds if deadline_seconds is None else deadline_seconds
            ),
            on_update=on_update,
        )
