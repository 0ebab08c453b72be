"""The outbox and the sender: once per event, retried over hours, persisted, SSRF-safe.

Every test runs on SQLite and (when configured) PostgreSQL through the ``db`` fixture.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from arkyra.db.models import Delivery, DeliveryStatus
from arkyra.db.session import Database
from arkyra.delivery import signing
from arkyra.delivery.queue import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE_SECONDS,
    Outbox,
    delivery_log,
    retry_delay,
)
from tests.delivery.conftest import (
    RECEIVER,
    Credentials,
    FakeClock,
    FakeResolver,
    receiver_log,
    set_behaviour,
)

ORG = "org_1"
HOOK = "int-webhook-1"
SECRET = signing.generate_secret()


def connect(credentials: Credentials, path: str, integration: str = HOOK, **extra: str) -> None:
    credentials.by_integration[integration] = {
        "url": f"{RECEIVER}/{path}",
        "secret": SECRET,
        **extra,
    }


async def enqueue(outbox: Outbox, n: int, *, integration: str = HOOK) -> list[str]:
    ids = []
    for i in range(n):
        queued = await outbox.enqueue(
            organization_id=ORG,
            integration_id=integration,
            identifier="webhooks",
            event_type="video.rendered",
            data={"video": i},
            idempotency_key=f"render-{i}",
        )
        ids.append(queued.id)
    return ids


async def row(db: Database, delivery_id: str) -> Delivery:
    async with db.transaction() as session:
        found = await session.get(Delivery, delivery_id)
    assert found is not None
    return found


# -- the schedule -----------------------------------------------------------------------------


def test_retry_schedule_matches_the_reference_with_bounded_jitter() -> None:
    assert RETRY_SCHEDULE_SECONDS == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    rng = random.Random(1)
    for made, base in enumerate(RETRY_SCHEDULE_SECONDS):
        delays = [retry_delay(made, rng) for _ in range(200)]
        assert all(d is not None and 0.8 * base <= d <= 1.2 * base for d in delays)
        if base:
            assert len(set(delays)) > 100  # jittered, not fixed
    assert retry_delay(MAX_ATTEMPTS, rng) is None
    assert retry_delay(1, rng, retry_after=3600) == 3600  # Retry-After longer than backoff wins
    assert retry_delay(3, rng, retry_after=1) >= 0.8 * 1800  # a short one never shortens it
    assert retry_delay(1, rng, retry_after=10**9) == 24 * 3600  # bounded


# -- happy path and idempotency --------------------------------------------------------------


async def test_an_event_is_delivered_once_and_signed(
    db: Database, make_worker: Any, credentials: Credentials, control: Any
) -> None:
    connect(credentials, "orders")
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1)

    assert await worker.drain() == 1
    assert await worker.drain() == 0

    log = await receiver_log(control, "orders")
    [received] = log["deliveries"]
    assert received["webhook_id"] == delivery_id
    assert received["headers"]["content-type"] == "application/json"
    payload = Webhook(SECRET).verify(received["body"], received["headers"])
    assert payload == {"type": "video.rendered", "timestamp": payload["timestamp"],
                       "data": {"video": 0}}  # fmt: skip
    [entry] = await delivery_log(db, ORG, HOOK)
    assert (entry.status, entry.attempts, entry.last_status) == ("delivered", 1, 200)
    assert entry.latency_ms is not None
    assert entry.latency_ms >= 0
    assert entry.delivered_at is not None
    assert entry.next_attempt_at is None


async def test_the_same_event_is_enqueued_once_per_integration(db: Database, clock: Any) -> None:
    outbox = Outbox(db, clock=clock)
    kwargs: dict[str, Any] = {"organization_id": ORG, "identifier": "webhooks",
                              "event_type": "video.rendered", "data": {"v": 1}}  # fmt: skip
    first = await outbox.enqueue(integration_id=HOOK, idempotency_key="k1", **kwargs)
    again = await outbox.enqueue(integration_id=HOOK, idempotency_key="k1", **kwargs)
    other = await outbox.enqueue(integration_id="int-2", idempotency_key="k1", **kwargs)
    implicit = await outbox.enqueue(integration_id=HOOK, **kwargs)
    implicit_again = await outbox.enqueue(integration_id=HOOK, **kwargs)

    assert first.created
    assert not again.created
    assert again.id == first.id
    assert other.created
    assert other.id != first.id
    assert implicit.created
    assert not implicit_again.created
    assert implicit_again.id == implicit.id
    async with db.transaction() as session:
        assert len((await session.scalars(select(Delivery.id))).all()) == 3


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"identifier": "heygen"}, "identifier"),
        ({"identifier": "nope"}, "identifier"),
        ({"event_type": "Rendered"}, "type"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"data": {"blob": "x" * 30_000}}, "data"),
    ],
)
async def test_bad_events_are_refused_at_enqueue(
    db: Database, clock: Any, overrides: dict[str, Any], field: str
) -> None:
    from arkyra.errors import InvalidInput

    event: dict[str, Any] = {"organization_id": ORG, "integration_id": HOOK,
                             "identifier": "webhooks", "event_type": "video.rendered",
                             "data": {}, **overrides}  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        await Outbox(db, clock=clock).enqueue(**event)
    assert field in caught.value.errors


async def test_delivery_log_is_scoped_to_the_organization(db: Database, clock: Any) -> None:
    outbox = Outbox(db, clock=clock)
    await enqueue(outbox, 3)
    assert len(await outbox.log(ORG, HOOK)) == 3
    assert await delivery_log(db, "org_other", HOOK) == []
    assert len(await delivery_log(db, ORG, HOOK, status="pending", limit=2)) == 2


# -- retries, restarts, leases ---------------------------------------------------------------


async def test_receiver_down_for_three_attempts_gets_each_event_once_across_a_restart(
    shared_url: str, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    connect(credentials, "flaky")
    await set_behaviour(control, "flaky", status=503)
    db = Database(shared_url)
    worker = make_worker(db)
    ids = await enqueue(worker.outbox, 3)

    assert await worker.drain() == 3  # attempt 1: down
    assert await worker.drain() == 0  # nothing is due before the backoff
    clock.advance(5 * 1.2 + 1)
    assert await worker.drain() == 3  # attempt 2: down
    await db.dispose()

    # "Restart": a new worker and a new engine on the same database.
    db = Database(shared_url)
    worker = make_worker(db)
    clock.advance(300 * 1.2 + 1)
    assert await worker.drain() == 3  # attempt 3: still down
    await set_behaviour(control, "flaky")  # the receiver recovers
    clock.advance(1800 * 1.2 + 1)
    assert await worker.drain() == 3  # attempt 4: accepted
    clock.advance(7 * 24 * 3600)
    assert await worker.drain() == 0  # nothing left to send, ever

    log = await receiver_log(control, "flaky")
    assert sorted(log["accepted_ids"]) == sorted(ids)
    accepted = Counter(d["webhook_id"] for d in log["deliveries"] if d["accepted"])
    assert accepted == dict.fromkeys(ids, 1)
    attempts = Counter(d["webhook_id"] for d in log["deliveries"])
    assert attempts == dict.fromkeys(ids, 4)  # one webhook-id per event across every retry
    for entry in await delivery_log(db, ORG, HOOK):
        assert (entry.status, entry.attempts, entry.last_status) == ("delivered", 4, 200)
        assert entry.last_error is None
    await db.dispose()


async def test_a_crashed_workers_claims_come_back_after_the_lease(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    connect(credentials, "lease")
    crashed = Outbox(db, clock=clock, lease_seconds=30)
    [delivery_id] = await enqueue(crashed, 1)
    [claim] = await crashed.claim(10)  # ...and the worker dies before sending

    worker = make_worker(db, lease_seconds=30)
    assert await worker.drain() == 0  # still leased
    clock.advance(31)
    assert await worker.drain() == 1
    assert (await row(db, delivery_id)).status == DeliveryStatus.DELIVERED

    # The dead worker wakes up late: its result is not recorded over the real one.
    from arkyra.providers.automation._hooks import AttemptResult, Outcome

    late = await crashed.record(claim, AttemptResult(Outcome.RETRY, 500, 1.0, "HTTP 500"))
    assert late is None
    stored = await row(db, delivery_id)
    assert (stored.status, stored.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert len((await receiver_log(control, "lease"))["accepted_ids"]) == 1


async def test_concurrent_workers_never_claim_the_same_delivery(
    shared_url: str, clock: FakeClock
) -> None:
    dbs = [Database(shared_url) for _ in range(3)]
    outboxes = [Outbox(db, clock=clock) for db in dbs]
    ids = await enqueue(outboxes[0], 40)
    try:
        seen: list[str] = []
        for _ in range(10):
            batches = await asyncio.gather(*(outbox.claim(7) for outbox in outboxes))
            seen += [claim.id for batch in batches for claim in batch]
        assert sorted(seen) == sorted(ids)  # every one claimed, none twice
    finally:
        for db in dbs:
            await db.dispose()


async def test_retry_after_is_honoured_on_throttling_statuses(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    connect(credentials, "busy")
    worker = make_worker(db)
    for status in (429, 503):
        await set_behaviour(control, "busy", status=status, retry_after=3600, times=1)
        [delivery_id] = await enqueue(worker.outbox, 1, integration=f"{HOOK}-{status}")
        credentials.by_integration[f"{HOOK}-{status}"] = credentials.by_integration[HOOK]
        await worker.drain()
        stored = await row(db, delivery_id)
        assert stored.status == DeliveryStatus.PENDING
        assert stored.last_status == status
        wait = (stored.next_attempt_at.replace(tzinfo=clock.now.tzinfo) - clock.now).total_seconds()
        assert 3600 <= wait <= 3601  # not the 5 s backoff
        clock.advance(3601)
        await worker.drain()
        assert (await row(db, delivery_id)).status == DeliveryStatus.DELIVERED


async def test_gives_up_after_the_last_attempt(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    connect(credentials, "broken")
    await set_behaviour(control, "broken", status=500, body="boom")
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1)
    for _ in range(MAX_ATTEMPTS + 2):
        await worker.drain()
        clock.advance(25 * 3600)
    stored = await row(db, delivery_id)
    assert (stored.status, stored.attempts) == (DeliveryStatus.FAILED, MAX_ATTEMPTS)
    assert stored.last_error is not None
    assert stored.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert "HTTP 500: boom" in stored.last_error
    assert len((await receiver_log(control, "broken"))["deliveries"]) == MAX_ATTEMPTS


# -- 410, redirects, SSRF --------------------------------------------------------------------


async def test_410_disables_the_endpoint_and_calls_the_hook(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    connect(credentials, "gone")
    await set_behaviour(control, "gone", status=410, body="unsubscribed")
    calls: list[tuple[str, str, str]] = []

    async def on_disabled(org: str, integration: str, reason: str) -> None:
        calls.append((org, integration, reason))

    worker = make_worker(db, on_disabled=on_disabled, batch_size=1)
    first, second = await enqueue(worker.outbox, 2)
    assert await worker.drain() == 1  # the 410 stops the second one before it is sent

    assert [(await row(db, i)).status for i in (first, second)] == ["disabled", "disabled"]
    endpoint = await worker.outbox.endpoint(HOOK)
    assert endpoint.disabled
    assert endpoint.reason
    assert "410" in endpoint.reason
    assert "unsubscribed" in endpoint.reason
    assert len(calls) == 1
    assert calls[0][:2] == (ORG, HOOK)
    assert "410" in calls[0][2]
    later = await worker.outbox.enqueue(organization_id=ORG, integration_id=HOOK,
                                        identifier="webhooks", event_type="video.rendered",
                                        data={"late": True})  # fmt: skip
    assert later.status == "disabled"
    clock.advance(86400)
    assert await worker.drain() == 0
    assert len((await receiver_log(control, "gone"))["deliveries"]) == 1

    # Reconnected: the stopped deliveries go out again.
    await set_behaviour(control, "gone")
    assert await worker.outbox.enable_endpoint(HOOK) == 3
    assert await worker.drain() == 3
    assert len((await receiver_log(control, "gone"))["accepted_ids"]) == 3


async def test_a_redirect_is_a_failure_and_is_not_followed(
    db: Database, make_worker: Any, credentials: Credentials, control: Any
) -> None:
    connect(credentials, "moved")
    await set_behaviour(
        control, "moved", status=302, location="http://169.254.169.254/latest/meta-data/"
    )
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1)
    await worker.drain()
    stored = await row(db, delivery_id)
    assert stored.status == DeliveryStatus.PENDING
    assert stored.last_status == 302
    assert stored.last_error is not None
    assert "redirects are not followed" in stored.last_error
    assert "latest" not in stored.last_error  # only scheme://host of the target is shown
    assert len((await receiver_log(control, "moved"))["deliveries"]) == 1


HOSTILE_DELIVERY_URLS = [
    "https://internal.example.com/hook",
    "https://meta.example.com/hook",
    "https://loop.example.com/hook",
    "https://mapped.example.com/hook",
    "https://half.example.com/hook",
    "http://127.0.0.1/receiver/x",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://10.1.2.3/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
]


@pytest.mark.parametrize("url", HOSTILE_DELIVERY_URLS)
async def test_hostile_urls_are_refused_at_delivery(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, url: str
) -> None:
    credentials.by_integration[HOOK] = {"url": url, "secret": SECRET}
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1)
    await worker.drain()
    stored = await row(db, delivery_id)
    assert stored.status == DeliveryStatus.FAILED
    assert stored.last_error is not None
    assert stored.last_error.startswith("refusing")
    assert "/hook" not in stored.last_error
    assert "meta-data" not in stored.last_error


async def test_dns_that_changes_after_connect_is_caught_at_delivery(
    db: Database,
    make_worker: Any,
    credentials: Credentials,
    control: Any,
    resolver: FakeResolver,
) -> None:
    connect(credentials, "rebind")
    worker = make_worker(db)
    first, second = await enqueue(worker.outbox, 2)
    await worker.outbox.db.dispose()
    worker.batch_size = 1
    await worker.run_once()
    resolver.table["hooks.example.com"] = ["10.0.0.7"]  # the name now points inside
    await worker.run_once()
    assert (await row(db, first)).status == DeliveryStatus.DELIVERED
    refused = await row(db, second)
    assert refused.status == DeliveryStatus.FAILED
    assert "10.0.0.7" in (refused.last_error or "")
    assert len((await receiver_log(control, "rebind"))["deliveries"]) == 1


async def test_a_removed_integration_fails_its_deliveries(
    db: Database, make_worker: Any, clock: FakeClock
) -> None:
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1, integration="int-deleted")
    await worker.drain()
    stored = await row(db, delivery_id)
    assert stored.status == DeliveryStatus.FAILED
    assert stored.last_error == "the integration was removed"


async def test_a_pending_delivery_survives_in_the_database_only(
    shared_url: str, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    """Nothing pending lives in worker memory: a fresh worker finds and sends it."""
    connect(credentials, "later")
    db = Database(shared_url)
    ids = await enqueue(Outbox(db, clock=clock), 2)
    await db.dispose()
    db = Database(shared_url)
    worker = make_worker(db)
    clock.advance(1)
    assert await worker.drain() == 2
    assert sorted((await receiver_log(control, "later"))["accepted_ids"]) == sorted(ids)
    await db.dispose()


def test_timestamps_on_disk_compare_in_utc() -> None:
    """The outbox writes aware UTC datetimes; a naive read-back is treated as UTC."""
    from datetime import UTC, datetime

    from arkyra.delivery.queue import aware

    naive = datetime(2026, 1, 1, 12, 0)
    assert aware(naive) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert aware(None) is None
    assert timedelta(0) == aware(naive) - datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# -- the loop and pre-send failures ----------------------------------------------------------


async def test_unavailable_credentials_are_retried_on_the_schedule(
    db: Database, make_worker: Any, credentials: Credentials, control: Any, clock: FakeClock
) -> None:
    from arkyra.errors import ArkyraError

    async def locked(org: str, integration: str) -> dict[str, str]:
        raise ArkyraError("integration needs to be connected again")

    worker = make_worker(db)
    worker.credentials = locked
    [delivery_id] = await enqueue(worker.outbox, 1)
    await worker.drain()
    stored = await row(db, delivery_id)
    assert stored.status == DeliveryStatus.PENDING
    assert stored.attempts == 1
    assert stored.last_error == "credentials unavailable (ArkyraError)"

    connect(credentials, "back")
    worker.credentials = credentials
    clock.advance(7)
    await worker.drain()
    assert (await row(db, delivery_id)).status == DeliveryStatus.DELIVERED


async def test_a_broken_secret_is_recorded_without_leaking(
    db: Database, make_worker: Any, credentials: Credentials
) -> None:
    credentials.by_integration[HOOK] = {"url": f"{RECEIVER}/x", "secret": "whsec_c2hvcnQ="}
    worker = make_worker(db)
    [delivery_id] = await enqueue(worker.outbox, 1)
    await worker.drain()
    stored = await row(db, delivery_id)
    assert stored.status == DeliveryStatus.PENDING
    assert stored.last_error is not None
    assert "cannot prepare the request" in stored.last_error
    assert "c2hvcnQ" not in stored.last_error


async def test_run_delivers_until_stopped(
    db: Database, make_worker: Any, credentials: Credentials, control: Any
) -> None:
    connect(credentials, "loop")
    worker = make_worker(db)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop, idle_seconds=0.01))
    ids = await enqueue(worker.outbox, 3)
    for _ in range(200):
        if len((await receiver_log(control, "loop"))["accepted_ids"]) == 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(runner, timeout=5)
    assert sorted((await receiver_log(control, "loop"))["accepted_ids"]) == sorted(ids)


async def test_concurrent_results_are_written_in_few_transactions(
    db: Database, make_worker: Any, credentials: Credentials, control: Any
) -> None:
    connect(credentials, "group")
    worker = make_worker(db)
    calls: list[int] = []
    record_many = worker.outbox.record_many

    async def counting(outcomes: Any) -> Any:
        calls.append(len(outcomes))
        return await record_many(outcomes)

    worker.outbox.record_many = counting
    ids = await enqueue(worker.outbox, 30)
    assert await worker.drain() == 30
    assert sum(calls) == 30
    assert len(calls) < 30  # grouped, not one commit per delivery
    assert sorted((await receiver_log(control, "group"))["accepted_ids"]) == sorted(ids)
