"""Finish a render from whichever arrives first: a poll result or a verified webhook.

:class:`JobWatcher` polls the vendor (with the usual backoff and hard deadline from
:func:`~arkyra.providers.jobs.poll_job`) while a webhook handler may :meth:`~JobWatcher.deliver`
the same job's final state. The first final state wins; everything after it is ignored, so the
job completes exactly once however the two race. All of this runs on one asyncio loop: the
decision is a synchronous check-and-set with no ``await`` in between, hence atomic. From another
thread, use :meth:`JobWatcher.deliver_threadsafe`.

With webhooks expected, give the watcher a ``first_poll_delay`` (the poll is then only a safety
net for a lost callback); without, it polls from the start like ``wait_for_job``.

:class:`WatcherRegistry` routes webhook updates (by provider and job id) to the watcher waiting
for them, and keeps a final update that arrives before its watcher (a very fast render).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from arkyra.errors import JobFailed
from arkyra.providers.jobs import JobStatus, RenderJob, poll_job

CompletionSource = Literal["poll", "webhook"]


def _job_failed(job: RenderJob) -> JobFailed:
    return JobFailed(
        job.failure_reason or f"job {job.id} failed",
        provider=job.provider,
        code=job.failure_code,
        details={"job_id": job.id, "vendor_status": job.vendor_status},
    )


class JobWatcher:
    """Waits for one job's final state from polling or a webhook, whichever comes first."""

    def __init__(
        self,
        provider: str,
        job_id: str,
        fetch: Callable[[], Awaitable[RenderJob]],
        *,
        initial_delay: float,
        max_delay: float,
        deadline_seconds: float,
        first_poll_delay: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.job_id = job_id
        self._fetch = fetch
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.deadline_seconds = deadline_seconds
        self.first_poll_delay = first_poll_delay
        self._sleep = sleep
        self._clock = clock
        self._outcome: asyncio.Future[RenderJob] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: What completed the job, once it is complete.
        self.completed_by: CompletionSource | None = None
        #: ``clock()`` when the final state was first seen.
        self.noticed_at: float | None = None
        #: Status requests made by the poll loop.
        self.status_requests = 0
        #: The latest state seen, final or not.
        self.latest: RenderJob | None = None

    # -- results -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._outcome is not None and self._outcome.done()

    def deliver(self, job: RenderJob) -> bool:
        """A verified webhook update; True when it completed the job, False when ignored."""
        return self._offer(job, "webhook")

    def deliver_threadsafe(self, job: RenderJob) -> None:
        """:meth:`deliver` from another thread (onto the loop that is waiting)."""
        if self._loop is None:
            raise RuntimeError("the watcher is not waiting on any loop yet")
        self._loop.call_soon_threadsafe(self.deliver, job)

    def _offer(self, job: RenderJob, source: CompletionSource) -> bool:
        """Settle with ``job`` if it is this job's first final state; otherwise ignore it."""
        if job.provider != self.provider or job.id != self.job_id:
            return False
        outcome = self._future()
        if outcome.done():
            return False
        self.latest = job
        if not job.status.is_final:
            return False
        if job.status is JobStatus.FAILED:
            outcome.set_exception(_job_failed(job))
        else:
            outcome.set_result(job)
        self.completed_by = source
        self.noticed_at = self._clock()
        return True

    def _fail(self, error: BaseException) -> None:
        outcome = self._future()
        if not outcome.done():
            outcome.set_exception(error)

    def _future(self) -> asyncio.Future[RenderJob]:
        if self._outcome is None:
            self._loop = asyncio.get_running_loop()
            self._outcome = self._loop.create_future()
        return self._outcome

    # -- waiting -----------------------------------------------------------------------------

    async def wait(self) -> RenderJob:
        """The final job (``JobFailed`` / ``JobDeadlineExceeded`` as with polling alone)."""
        outcome = self._future()
        poller = asyncio.create_task(self._poll(), name=f"poll {self.provider} {self.job_id}")
        try:
            return await asyncio.shield(outcome)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            if outcome.done() and not outcome.cancelled():
                outcome.exception()  # mark a lost race's exception as retrieved

    async def _poll(self) -> None:
        start = self._clock()
        try:
            if self.first_poll_delay > 0:
                await self._sleep(min(self.first_poll_delay, self.deadline_seconds))
                if self.done:
                    return
            remaining = self.deadline_seconds - (self._clock() - start)
            await poll_job(
                self._fetch_counted,
                initial_delay=self.initial_delay,
                max_delay=self.max_delay,
                deadline_seconds=max(remaining, 0.0),
                on_update=lambda job: self._offer(job, "poll"),
                sleep=self._sleep,
                clock=self._clock,
            )
        except JobFailed:
            pass  # already settled by _offer (or by a webhook before it)
        except Exception as exc:  # deadline, provider errors, bugs: wait() must not hang
            self._fail(exc)

    async def _fetch_counted(self) -> RenderJob:
        if self.done:  # a webhook won while we slept: stop polling without another request
            assert self.latest is not None
            return self.latest
        self.status_requests += 1
        return await self._fetch()


class WatcherRegistry:
    """Routes webhook updates to the watcher of that job; keeps early ones for a while."""

    def __init__(
        self, *, early_ttl_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.early_ttl_seconds = early_ttl_seconds
        self._clock = clock
        self._watchers: dict[tuple[str, str], JobWatcher] = {}
        self._early: dict[tuple[str, str], tuple[float, RenderJob]] = {}

    def deliver(self, job: RenderJob) -> bool:
        """Hand a verified update to its watcher; True when it completed the job."""
        key = (job.provider, job.id)
        watcher = self._watchers.get(key)
        if watcher is not None:
            return watcher.deliver(job)
        if job.status.is_final:
            self._drop_stale()
            self._early.setdefault(key, (self._clock(), job))
        return False

    async def wait(self, watcher: JobWatcher) -> RenderJob:
        """Register ``watcher``, replay an early update if one came, wait, then unregister."""
        key = (watcher.provider, watcher.job_id)
        if key in self._watchers:
            raise ValueError(f"{watcher.provider} job {watcher.job_id} is already watched")
        self._watchers[key] = watcher
        try:
            early = self._early.pop(key, None)
            if early is not None:
                watcher.deliver(early[1])
            return await watcher.wait()
        finally:
            self._watchers.pop(key, None)

    def _drop_stale(self) -> None:
        limit = self._clock() - self.early_ttl_seconds
        for key in [k for k, (seen, _) in self._early.items() if seen < limit]:
            del self._early[key]
