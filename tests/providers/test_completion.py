"""JobWatcher: the first final state wins (poll or webhook), once; backoff and deadline kept."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from arkyra.errors import JobDeadlineExceeded, JobFailed, Transient
from arkyra.providers.jobs import JobStatus, RenderJob
from arkyra.providers.video.completion import JobWatcher, WatcherRegistry

PROVIDER = "heygen"
JOB_ID = "vid_1"


def job(
    status: JobStatus, *, job_id: str = JOB_ID, url: str | None = None, **kw: object
) -> RenderJob:
    return RenderJob(provider=PROVIDER, id=job_id, status=status, result_url=url, **kw)  # type: ignore[arg-type]


class FakeTime:
    """A clock that only moves when the code under test sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Vendor:
    """A job that is running for ``polls_until_done`` status reads, then ends as ``final``."""

    def __init__(self, polls_until_done: int, final: RenderJob | None = None) -> None:
        self.polls_until_done = polls_until_done
        self.final = final or job(JobStatus.SUCCEEDED, url="https://cdn/poll.mp4")
        self.reads = 0

    async def fetch(self) -> RenderJob:
        self.reads += 1
        if self.reads > self.polls_until_done:
            return self.final
        return job(JobStatus.RUNNING)


def watcher(fetch: Callable, time: FakeTime | None = None, **kw: float) -> JobWatcher:
    options: dict = {"initial_delay": 1.0, "max_delay": 4.0, "deadline_seconds": 60.0, **kw}
    if time is not None:
        options |= {"sleep": time.sleep, "clock": time.clock}
    return JobWatcher(PROVIDER, JOB_ID, fetch, **options)


async def test_polling_alone_completes_with_backoff() -> None:
    time = FakeTime()
    vendor = Vendor(polls_until_done=5)
    w = watcher(vendor.fetch, time)

    done = await w.wait()

    assert done.result_url == "https://cdn/poll.mp4"
    assert (w.completed_by, w.status_requests, vendor.reads) == ("poll", 6, 6)
    assert time.sleeps == [1.0, 1.5, 2.25, 3.375, 4.0]
    assert w.noticed_at == pytest.approx(sum(time.sleeps))
    assert w.deliver(job(JobStatus.SUCCEEDED, url="https://cdn/late-webhook.mp4")) is False


async def test_webhook_first_completes_without_polling_and_stops_the_poll() -> None:
    vendor = Vendor(polls_until_done=0)
    w = watcher(vendor.fetch, first_poll_delay=30.0)
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0.01)

    assert w.deliver(job(JobStatus.RUNNING)) is False, "a progress update completes nothing"
    assert w.deliver(job(JobStatus.SUCCEEDED, url="https://cdn/hook.mp4")) is True
    done = await asyncio.wait_for(task, 1)

    assert done.result_url == "https://cdn/hook.mp4"
    assert (w.completed_by, w.status_requests, vendor.reads) == ("webhook", 0, 0)
    await asyncio.sleep(0.02)
    assert vendor.reads == 0, "the poll loop was cancelled"


async def test_a_late_poll_result_is_ignored_after_the_webhook() -> None:
    release = asyncio.Event()
    vendor = Vendor(polls_until_done=0)

    async def slow_fetch() -> RenderJob:
        await release.wait()
        return await vendor.fetch()

    w = watcher(slow_fetch)
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0.01)  # the poll is now in flight
    assert w.deliver(job(JobStatus.SUCCEEDED, url="https://cdn/hook.mp4"))
    release.set()
    done = await task

    assert done.result_url == "https://cdn/hook.mp4"
    assert w.completed_by == "webhook"


async def test_concurrent_deliveries_complete_exactly_once() -> None:
    w = watcher(Vendor(polls_until_done=10**6).fetch, first_poll_delay=30.0)
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    updates = [job(JobStatus.SUCCEEDED, url=f"https://cdn/{n}.mp4") for n in range(50)]

    async def deliver(update: RenderJob) -> bool:
        await asyncio.sleep(0)
        return w.deliver(update)

    results = await asyncio.gather(*(deliver(u) for u in updates))
    done = await task

    assert results.count(True) == 1
    assert done.result_url == updates[results.index(True)].result_url


async def test_failure_from_a_webhook_raises_job_failed_once() -> None:
    w = watcher(Vendor(polls_until_done=0).fetch, first_poll_delay=30.0)
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    failed = job(JobStatus.FAILED, failure_reason="Invalid text detected", failure_code="40039")
    assert w.deliver(failed) is True
    assert w.deliver(job(JobStatus.SUCCEEDED, url="https://cdn/x.mp4")) is False

    with pytest.raises(JobFailed) as caught:
        await task
    assert (caught.value.code, caught.value.message) == ("40039", "Invalid text detected")
    assert caught.value.details["job_id"] == JOB_ID


async def test_failure_from_polling_raises_job_failed() -> None:
    vendor = Vendor(polls_until_done=1, final=job(JobStatus.FAILED, failure_reason="boom"))
    with pytest.raises(JobFailed, match="boom"):
        await watcher(vendor.fetch, FakeTime()).wait()


async def test_hard_deadline_counts_the_first_poll_delay() -> None:
    time = FakeTime()
    vendor = Vendor(polls_until_done=10**6)
    w = watcher(vendor.fetch, time, deadline_seconds=10.0, first_poll_delay=6.0)

    with pytest.raises(JobDeadlineExceeded) as caught:
        await w.wait()

    assert caught.value.details["job_id"] == JOB_ID
    assert time.now == pytest.approx(10.0)
    assert time.sleeps[0] == 6.0
    assert w.deliver(job(JobStatus.SUCCEEDED)) is False, "too late: the deadline decided"


async def test_poll_errors_end_the_wait() -> None:
    async def broken() -> RenderJob:
        raise Transient("down", provider=PROVIDER)

    with pytest.raises(Transient):
        await watcher(broken, FakeTime()).wait()


async def test_updates_for_other_jobs_are_ignored() -> None:
    w = watcher(Vendor(polls_until_done=0).fetch, first_poll_delay=30.0)
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    assert w.deliver(job(JobStatus.SUCCEEDED, job_id="other")) is False
    other_vendor = RenderJob(provider="synthesia", id=JOB_ID, status=JobStatus.SUCCEEDED)
    assert w.deliver(other_vendor) is False
    assert not task.done()
    assert w.deliver(job(JobStatus.CANCELLED)) is True
    assert (await task).status is JobStatus.CANCELLED


async def test_delivery_from_another_thread() -> None:
    w = watcher(Vendor(polls_until_done=0).fetch, first_poll_delay=30.0)
    with pytest.raises(RuntimeError):
        w.deliver_threadsafe(job(JobStatus.SUCCEEDED))
    task = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    thread = threading.Thread(
        target=w.deliver_threadsafe, args=(job(JobStatus.SUCCEEDED, url="https://t/x.mp4"),)
    )
    thread.start()
    thread.join()
    assert (await asyncio.wait_for(task, 1)).result_url == "https://t/x.mp4"


# -- the registry -----------------------------------------------------------------------------


async def test_registry_routes_updates_and_keeps_early_ones() -> None:
    registry = WatcherRegistry()
    early = job(JobStatus.SUCCEEDED, url="https://cdn/early.mp4")
    assert registry.deliver(early) is False, "nobody is waiting yet"
    assert registry.deliver(job(JobStatus.RUNNING, job_id="vid_2")) is False

    w = watcher(Vendor(polls_until_done=10**6).fetch, first_poll_delay=30.0)
    done = await asyncio.wait_for(registry.wait(w), 1)
    assert (done.result_url, w.completed_by) == ("https://cdn/early.mp4", "webhook")

    second = JobWatcher(
        PROVIDER, "vid_2", Vendor(10**6).fetch, initial_delay=1, max_delay=1,
        deadline_seconds=60, first_poll_delay=30,
    )  # fmt: skip
    task = asyncio.create_task(registry.wait(second))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="already watched"):
        await registry.wait(second)
    assert registry.deliver(job(JobStatus.SUCCEEDED, job_id="vid_2")) is True
    assert (await task).id == "vid_2"
    assert registry.deliver(job(JobStatus.SUCCEEDED, job_id="vid_2")) is False


async def test_registry_forgets_stale_early_updates() -> None:
    time = FakeTime()
    registry = WatcherRegistry(early_ttl_seconds=5, clock=time.clock)
    registry.deliver(job(JobStatus.SUCCEEDED, url="https://cdn/stale.mp4"))
    time.now = 10
    registry.deliver(job(JobStatus.SUCCEEDED, job_id="vid_other"))  # triggers the clean-up
    vendor = Vendor(polls_until_done=0)
    w = watcher(vendor.fetch, FakeTime())
    done = await registry.wait(w)
    assert (done.result_url, w.completed_by) == ("https://cdn/poll.mp4", "poll")
