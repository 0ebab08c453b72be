"""What happened recently with one integration: its API jobs and, for automation, deliveries.

The dashboard's provider panel shows this; the API serves the same data from ``GET /jobs``
and ``GET /third-party/{id}/deliveries``. Reading it never fails the page: a broken read is
reported as a problem next to the table instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arkyra.api.jobs import JobRunner, JobView
from arkyra.api.logging import get_logger
from arkyra.credentials import Integration
from arkyra.db.session import Database
from arkyra.delivery.queue import DeliveryLogEntry, delivery_log

log = get_logger("arkyra.api.activity")

#: Rows per table on the panel; the API pages further.
RECENT = 20
#: Categories whose integrations take deliveries.
DELIVERING_CATEGORIES = frozenset({"automation"})


@dataclass
class Activity:
    """Recent jobs and deliveries of one integration (``None``: not applicable)."""

    jobs: list[JobView] = field(default_factory=list)
    deliveries: list[DeliveryLogEntry] | None = None
    problems: list[str] = field(default_factory=list)


async def recent_activity(
    jobs: JobRunner, db: Database, integration: Integration, category: str
) -> Activity:
    """The newest jobs of ``integration`` and, when it delivers, its newest deliveries."""
    activity = Activity()
    try:
        activity.jobs = await jobs.recent(
            integration.organization_id, integration_id=integration.id, limit=RECENT
        )
    except Exception as exc:  # the panel still shows the rest
        log.warning("recent jobs of %s unavailable: %s", integration.id, type(exc).__name__)
        activity.problems.append("Recent jobs could not be read just now.")
    if category in DELIVERING_CATEGORIES:
        try:
            activity.deliveries = await delivery_log(
                db, integration.organization_id, integration.id, limit=RECENT
            )
        except Exception as exc:
            log.warning("delivery log of %s unavailable: %s", integration.id, type(exc).__name__)
            activity.deliveries = []
            activity.problems.append("Recent deliveries could not be read just now.")
    return activity
