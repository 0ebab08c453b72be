"""A pipeline's deliveries in the integration's delivery log (the API's and the dashboard's).

``push_result`` sends directly (Prefect retries it and caches the result), not through the
outbox, so without this the log of a webhook that receives a pipeline's results would stay
empty. The entry is written once the send settles; writing it is best effort: a flow run whose
worker cannot reach the database still delivers, and says once why the log is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from arkyra.config import Settings
from arkyra.db.session import Database
from arkyra.pipelines.models import Integration

logger = logging.getLogger(__name__)
_warned = False


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
        await self._write(True, answer.get("status"), answer.get("latency_ms"), None)

    async def failed(self, exc: BaseException) -> None:
        status = getattr(exc, "status", None)
        # The taxonomy's messages never hold a credential or a hook URL's path.
        reason = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        await self._write(False, status if isinstance(status, int) else None, None, reason)

    async def _write(
        self, delivered: bool, status: int | None, latency_ms: Any, error: str | None
    ) -> None:
        if not self.destination.integration_id or self.attempts == 0:
            return  # nothing was sent (e.g. the credentials could not be loaded)
        from arkyra.delivery.queue import Outbox  # the database layer, only when used

        try:
            db = Database.from_settings(self.settings)
            try:
                await Outbox(db).record_sent(
                    organization_id=self.organization_id,
                    integration_id=self.destination.integration_id,
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
            finally:
                await db.dispose()
        except Exception as exc:  # the delivery itself is what matters
            _warn_once(exc)


def _warn_once(exc: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "pipeline deliveries are not in the delivery log: the database is unavailable "
            "to this worker (%s); set ARKYRA_DATABASE_URL for it",
            type(exc).__name__,
        )
