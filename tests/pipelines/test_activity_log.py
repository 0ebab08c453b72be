"""A pipeline's renders, speech and deliveries in the integrations' history: final rows, never
claimed again; writing them never fails the step."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arkyra.api.jobs import JobRunner
from arkyra.db.models import Organization
from arkyra.db.session import Database
from arkyra.delivery.queue import Outbox, delivery_log
from arkyra.errors import InvalidInput, Transient
from arkyra.pipelines import activity_log
from arkyra.pipelines.activity_log import SentLog, log_job
from arkyra.pipelines.models import Integration
from tests.conftest import make_settings

ORG = "org-a"
HOOK = "6d8a3c2e-5d0f-4d8e-9b1a-2f4c1e7a9b3d"


async def record(outbox: Outbox, *, delivered: bool, attempts: int, **extra: object) -> None:
    await outbox.record_sent(
        organization_id=ORG, integration_id=HOOK, identifier="webhooks",
        message_id="msg_sent_1", event_type="arkyra.item.completed", data={"item": 1},
        attempts=attempts, delivered=delivered, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_a_sent_delivery_is_logged_final_and_repeats_add_up(db: Database) -> None:
    outbox = Outbox(db)
    await record(outbox, delivered=False, attempts=2, last_status=503, latency_ms=12.5,
                 error="Transient: HTTP 503")  # fmt: skip
    (failed,) = await delivery_log(db, ORG, HOOK)
    assert (failed.status, failed.attempts, failed.last_status) == ("failed", 2, 503)
    assert failed.last_error == "Transient: HTTP 503"
    assert failed.next_attempt_at is None
    assert await outbox.claim(10) == []  # a worker never sends it again

    await record(outbox, delivered=True, attempts=1, last_status=200, latency_ms=8.0)
    (entry,) = await delivery_log(db, ORG, HOOK)
    assert (entry.id, entry.status, entry.attempts) == ("msg_sent_1", "delivered", 3)
    assert entry.last_error is None
    assert entry.delivered_at is not None
    assert entry.latency_ms == pytest.approx(8.0)
    assert await delivery_log(db, "org-b", HOOK) == []


async def test_only_automation_providers_have_a_delivery_log(db: Database) -> None:
    with pytest.raises(InvalidInput):
        await Outbox(db).record_sent(
            organization_id=ORG, integration_id=HOOK, identifier="heygen",
            message_id="msg_x", event_type="a.b", data={}, attempts=1, delivered=True,
            last_status=200, latency_ms=1.0,
        )  # fmt: skip


def sent(tmp_path: Path, database_url: str, integration_id: str | None = HOOK) -> SentLog:
    settings = make_settings(tmp_path, database_url=database_url)
    destination = Integration(identifier="webhooks", integration_id=integration_id)
    return SentLog(settings, ORG, destination, "msg_sent_2", "arkyra.item.completed", {"n": 2})


async def test_the_pipelines_log_records_failures_with_their_reason(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    log = sent(tmp_path, database_url)
    log.attempts = 3
    await log.failed(Transient("the receiver answered 502", status=502))
    (entry,) = await delivery_log(db, ORG, HOOK)
    assert (entry.status, entry.attempts, entry.last_status) == ("failed", 3, 502)
    assert entry.last_error == "Transient: the receiver answered 502"


async def test_nothing_is_logged_when_nothing_was_sent(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    await sent(tmp_path, database_url).failed(RuntimeError("credentials missing"))  # 0 attempts
    platform = sent(tmp_path, database_url, integration_id=None)
    platform.attempts = 1
    await platform.delivered({"status": 200, "latency_ms": 3.0})
    assert await delivery_log(db, ORG, HOOK) == []


async def test_an_unreachable_database_costs_one_warning_not_the_delivery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activity_log, "_warned", False)
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    for _ in range(2):
        log = sent(tmp_path, missing)
        log.attempts = 1
        with caplog.at_level(logging.WARNING, logger="arkyra.pipelines.activity_log"):
            await log.delivered({"status": 200, "latency_ms": 3.0})  # does not raise
    warnings = [r for r in caplog.records if r.name == "arkyra.pipelines.activity_log"]
    assert len(warnings) == 1
    assert "ARKYRA_DATABASE_URL" in warnings[0].getMessage()


async def test_a_failed_render_is_a_failed_job_with_its_reason(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    async with db.transaction() as session:
        session.add(Organization(id=ORG, name="a"))
    settings = make_settings(tmp_path, database_url=database_url)
    heygen = Integration(identifier="heygen", integration_id=HOOK)
    started = datetime.now(UTC)
    await log_job(settings, ORG, heygen, started, error=Transient("render failed: 503"))
    await log_job(settings, ORG, Integration(identifier="openai"), started, result={})  # no id
    (job,) = await JobRunner(db).recent(ORG)
    assert (job.kind, job.status, job.integration_id) == ("pipeline", "failed", HOOK)
    assert job.error == {"error": "Transient", "message": "Transient: render failed: 503"}
    assert job.result is None
    assert job.finished_at is not None
