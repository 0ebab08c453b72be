"""A pipeline's work in the integration's own history: renders and speech in its recent jobs,
deliveries in its delivery log (what the API and the dashboard's integration page show).

Pipeline tasks call vendors directly (Prefect retries and caches them), not through the API's
job runner or the delivery outbox, so without this an integration used only by pipelines would
show no activity. Entries are written once a step settles, as final rows (no worker picks them
up). Writing is best effort: a flow run whose worker cannot reach the database still does its
work, and says once why the history is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from arkyra.config import Settings
from arkyra.db.models import Job, JobState, utcnow
from arkyra.db.session import Database
from arkyra.pipelines.models import Integration

logger = logging.getLogger(__name__)
_warned = False

#: ``Job.kind`` of a pipeline's render or speech (the API's own jobs are ``submit``).
PIPELINE_JOB_KIND = "pipeline"


def _reason(exc: BaseException) -> str:
    # The taxonomy's messages never hold a credential or a hook URL's path.
    return f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


async def _write(settings: Settings, write: Callable[[Database], Awaitable[None]]) -> None:
    try:
        db = Database.from_settings(settings)
        try:
            await write(db)
        finally:
            await db.dispose()
    except Exception as exc:  # the step's own work is what matters
        _warn_once(exc)


def _warn_once(exc: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "pipeline jobs and deliveries are not in the integrations' history: the database "
            "is unavailable to this worker (%s); set ARKYRA_DATABASE_URL for it",
            type(exc).__name__,
        )


async def log_job(
    settings: Settings,
    organization_id: str,
    integration: Integration,
    started: datetime,
    *,
    result: Any = None,
    error: BaseException | None = None,
) -> None:
    """One finished render or speech as a job of ``integration`` (succeeded or failed)."""
    if not integration.integration_id:
        return
    now = utcnow()
    row = Job(
        organization_id=organization_id,
        integration_id=integration.integration_id,
        identifier=integration.identifier,
        kind=PIPELINE_JOB_KIND,
        status=(JobState.FAILED if error is not None else JobState.SUCCEEDED).value,
        progress=None if error is not None else 1,
        result=result if error is None else None,
        error={"error": type(error).__name__, "message": _reason(error)} if error else None,
        created_at=started,
        updated_at=now,
        heartbeat_at=now,
        finished_at=now,
    )

    async def write(db: Database) -> None:
        async with db.transaction() as session:
            session.add(row)

    await _write(settings, write)


class SentLog:
    """Counts one delivery's attempts in this task run, then logs how it ended."""

    def __init__(
        self,
        settings: Settings,
        organization_id: str,
        destination: Integration,
        message_id: str,
        event_type: str,
        payload: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.organization_id = organization_id
        self.destination = destination
        self.message_id = message_id
        self.event_type = event_type
        self.payload = payload
        self.attempts = 0

    async def delivered(self, answer: Any) -> None:
        answer = answer if isinstance(answer, dict) else {}
        await self._log(True, answer.get("status"), answer.get("latency_ms"), None)

    async def failed(self, exc: BaseException) -> None:
        status = getattr(exc, "status", None)
        await self._log(False, status if isinstance(status, int) else None, None, _reason(exc))

    async def _log(
        self, delivered: bool, status: int | None, latency_ms: Any, error: str | None
    ) -> None:
        integration_id = self.destination.integration_id
        if not integration_id or self.attempts == 0:
            return  # nothing was sent (e.g. the credentials could not be loaded)
        from arkyra.delivery.queue import Outbox  # the delivery layer, only when used

        async def write(db: Database) -> None:
            await Outbox(db).record_sent(
                organization_id=self.organization_id,
                integration_id=integration_id,
                identifier=self.destination.identifier,
                message_id=self.message_id,
                event_type=self.event_type,
                data=self.payload,
                attempts=self.attempts,
                delivered=delivered,
                last_status=status,
                latency_ms=float(latency_ms) if isinstance(latency_ms, int | float) else None,
                error=error,
            )

        await _write(self.settings, write)
