"""Alerts: tell an organization when something of theirs needs attention.

Four things raise an alert: a provider's circuit breaker opens, an integration starts needing
a reconnect, a delivery endpoint is disabled (a 410), a pipeline run fails. The organization's
channels are its connected ``webhooks`` and ``apprise`` integrations: each alert is put in the
delivery :class:`~arkyra.delivery.queue.Outbox` once per channel, as an ``alert.<kind>`` event
under that channel's identifier, so it is retried and de-duplicated like any other delivery.
A ``webhooks`` channel gets it signed (Standard Webhooks); an ``apprise`` channel (Slack,
Discord, Telegram, ... through an Apprise URL kept like any credential) gets a notification
whose title names the alert and whose body holds the reason and the link.

The same alert (organization + kind + subject) is sent once per window: in this process by an
in-memory sliding window, across processes by an outbox idempotency key that names the window.

The other parts call the module functions (:func:`breaker_opened`,
:func:`integration_needs_reconnect`, :func:`delivery_disabled`, :func:`pipeline_failed`).
They go to the :class:`Alerts` installed with :func:`install` (the API lifespan does this) and
are a logged no-op without one. They never raise: an alert must not break what raised it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import select

from arkyra.db.models import IntegrationStatus, ThirdParty
from arkyra.db.session import Database

logger = logging.getLogger("arkyra.alerts")

#: The automation providers whose integrations receive alerts.
CHANNEL_IDENTIFIERS: tuple[str, ...] = ("webhooks", "apprise")
DEFAULT_WINDOW_SECONDS = 15 * 60.0
MAX_REASON_CHARS = 500


class AlertKind(StrEnum):
    BREAKER_OPENED = "breaker_opened"
    INTEGRATION_NEEDS_RECONNECT = "integration_needs_reconnect"
    DELIVERY_DISABLED = "delivery_disabled"
    PIPELINE_FAILED = "pipeline_failed"


@dataclass(frozen=True)
class Alert:
    """One thing to tell one organization, with where to look in the dashboard."""

    organization_id: str
    kind: AlertKind
    subject: str
    reason: str
    link: str
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def event_type(self) -> str:
        return f"alert.{self.kind}"

    def data(self) -> dict[str, Any]:
        """The delivered event's ``data``."""
        return {
            "kind": str(self.kind),
            "organization_id": self.organization_id,
            "subject": self.subject,
            "reason": self.reason,
            "link": self.link,
            "occurred_at": self.occurred_at.isoformat(),
        }


class Channel(NamedTuple):
    """One place an organization's alerts go: an integration and its provider."""

    integration_id: str
    identifier: str


class Deduplicator:
    """Lets one alert per (organization, kind, subject) through per sliding window."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}

    def first_in_window(self, alert: Alert) -> bool:
        now = self.clock()
        key = (alert.organization_id, str(alert.kind), alert.subject)
        last = self._last.get(key)
        if last is not None and now - last < self.window_seconds:
            return False
        self._last[key] = now
        if len(self._last) > 10_000:
            self._forget_older_than(now - self.window_seconds)
        return True

    def forget(self, alert: Alert) -> None:
        self._last.pop((alert.organization_id, str(alert.kind), alert.subject), None)

    def _forget_older_than(self, limit: float) -> None:
        for key in [k for k, seen in self._last.items() if seen < limit]:
            del self._last[key]


class Alerts:
    """Sends alerts to an organization's connected channels (:data:`CHANNEL_IDENTIFIERS`) via
    the outbox."""

    def __init__(
        self,
        db: Database,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        operator_organizations: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        dashboard_url: str = "",
    ) -> None:
        from arkyra.delivery.queue import Outbox  # the database layer, only when used

        self.db = db
        #: Prefix of every link (``settings.public_url``), so a link in Slack or an e-mail opens.
        self.dashboard_url = dashboard_url.rstrip("/")
        self.outbox = Outbox(db)
        self.window_seconds = window_seconds
        #: Who hears about breakers (they are platform-wide, not any one organization's).
        self.operator_organizations = tuple(operator_organizations)
        self.dedup = Deduplicator(window_seconds, clock)
        self.wall_clock = wall_clock

    async def send(self, alert: Alert) -> list[str]:
        """Queue ``alert`` for each channel; the delivery ids (none when de-duplicated)."""
        if not self.dedup.first_in_window(alert):
            logger.info("alert %s for %s suppressed (sent recently)", alert.kind, alert.subject)
            return []
        try:
            channels = await self.channels(alert.organization_id)
            ids = [await self._enqueue(alert, channel) for channel in channels]
        except BaseException:
            self.dedup.forget(alert)  # not sent: let the next occurrence try again
            raise
        if not channels:
            logger.info(
                "alert %s for %s: organization %s has no connected alert channel",
                alert.kind,
                alert.subject,
                alert.organization_id,
            )
        return ids

    async def channels(self, organization_id: str) -> list[Channel]:
        """The organization's connected ``webhooks`` and ``apprise`` integrations."""
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(ThirdParty.id, ThirdParty.identifier)
                .where(
                    ThirdParty.organization_id == organization_id,
                    ThirdParty.identifier.in_(CHANNEL_IDENTIFIERS),
                    ThirdParty.status == IntegrationStatus.CONNECTED,
                    ThirdParty.deleted_at.is_(None),
                )
                .order_by(ThirdParty.identifier, ThirdParty.id)
            )
            return [Channel(integration_id, identifier) for integration_id, identifier in rows]

    async def _enqueue(self, alert: Alert, channel: Channel) -> str:
        enqueued = await self.outbox.enqueue(
            organization_id=alert.organization_id,
            integration_id=channel.integration_id,
            identifier=channel.identifier,
            event_type=alert.event_type,
            data=alert.data(),
            idempotency_key=self._idempotency_key(alert),
        )
        return enqueued.id

    def _idempotency_key(self, alert: Alert) -> str:
        """Same alert, same window -> same key: other processes' copies collapse in the outbox."""
        window = int(self.wall_clock() // max(self.window_seconds, 1.0))
        subject = hashlib.sha256(alert.subject.encode()).hexdigest()[:32]
        return f"alert:{alert.kind}:{subject}:{window}"

    def link(self, path: str) -> str:
        """A dashboard path as a full URL (or as it is, without a dashboard URL)."""
        return f"{self.dashboard_url}{path}"

    # -- the four events ---------------------------------------------------------------------

    async def integration_needs_reconnect(
        self, organization_id: str, integration_id: str, reason: str
    ) -> list[str]:
        return await self.send(
            Alert(
                organization_id,
                AlertKind.INTEGRATION_NEEDS_RECONNECT,
                integration_id,
                _clip(reason),
                self.link(integration_link(integration_id)),
            )
        )

    async def delivery_disabled(
        self, organization_id: str, integration_id: str, reason: str
    ) -> list[str]:
        return await self.send(
            Alert(
                organization_id,
                AlertKind.DELIVERY_DISABLED,
                integration_id,
                _clip(reason),
                self.link(integration_link(integration_id)),
            )
        )

    async def pipeline_failed(
        self, organization_id: str, flow_run_id: str, reason: str
    ) -> list[str]:
        return await self.send(
            Alert(
                organization_id,
                AlertKind.PIPELINE_FAILED,
                flow_run_id,
                _clip(reason),
                self.link(PIPELINES_LINK),
            )
        )

    async def breaker_opened(self, provider: str, reason: str) -> list[str]:
        ids: list[str] = []
        for organization_id in self.operator_organizations:
            ids += await self.send(
                Alert(
                    organization_id,
                    AlertKind.BREAKER_OPENED,
                    provider,
                    _clip(reason),
                    self.link(AI_LINK),
                )
            )
        if not self.operator_organizations:
            logger.warning("breaker for %s opened (%s); no operator organization", provider, reason)
        return ids


#: Dashboard paths (the dashboard is served by the API, at ``settings.public_url``).
AI_LINK = "/ui/ai"
PIPELINES_LINK = "/ui/pipelines"


def integration_link(integration_id: str) -> str:
    return f"/ui/integrations/{integration_id}"


def _clip(reason: str) -> str:
    text = " ".join((reason or "no reason given").split())
    return text[:MAX_REASON_CHARS]


# -- the process-wide instance and the hook functions -------------------------------------------

_installed: Alerts | None = None


def install(alerts: Alerts | None) -> None:
    """Make ``alerts`` the process's sender (``None`` uninstalls)."""
    global _installed
    _installed = alerts


def current() -> Alerts | None:
    return _installed


def operator_organizations(settings: Any) -> Sequence[str]:
    """``settings.alerts_operator_orgs`` (comma separated or a list) when that setting exists."""
    value = getattr(settings, "alerts_operator_orgs", None) or ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.strip() for v in value if v and v.strip())


async def _dispatch(method: str, *args: str, alerts: Alerts | None = None) -> list[str]:
    sender = alerts or _installed
    if sender is None:
        logger.info("alert %s not sent: no alert sender in this process", method)
        return []
    try:
        return await getattr(sender, method)(*args)
    except Exception as exc:  # an alert must never break the code that raised it
        logger.warning("alert %s could not be queued: %s", method, type(exc).__name__)
        return []


async def integration_needs_reconnect(
    organization_id: str, integration_id: str, reason: str, *, alerts: Alerts | None = None
) -> list[str]:
    """An integration's credentials stopped working; its owners must connect it again."""
    args = (organization_id, integration_id, reason)
    return await _dispatch("integration_needs_reconnect", *args, alerts=alerts)


async def delivery_disabled(
    organization_id: str, integration_id: str, reason: str, *, alerts: Alerts | None = None
) -> list[str]:
    """A delivery endpoint answered 410 and is disabled."""
    args = (organization_id, integration_id, reason)
    return await _dispatch("delivery_disabled", *args, alerts=alerts)


async def pipeline_failed(
    organization_id: str, flow_run_id: str, reason: str, *, alerts: Alerts | None = None
) -> list[str]:
    """A pipeline run ended failed."""
    return await _dispatch("pipeline_failed", organization_id, flow_run_id, reason, alerts=alerts)


async def breaker_opened(provider: str, reason: str, *, alerts: Alerts | None = None) -> list[str]:
    """A provider's circuit breaker opened (told to the operator organizations)."""
    return await _dispatch("breaker_opened", provider, reason, alerts=alerts)


async def pipeline_failure_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` hook: alert the run's organization.

    In the API process the installed sender is used; in a flow-run process (none installed) a
    sender is built from the pipeline runtime's settings for this one alert and closed again.
    """
    parameters = getattr(flow_run, "parameters", None) or {}
    organization_id = parameters.get("organization_id")
    if not isinstance(organization_id, str) or not organization_id:
        return
    reason = getattr(state, "message", None) or "the run failed"
    run_id = str(getattr(flow_run, "id", "") or "")
    if _installed is not None:
        await pipeline_failed(organization_id, run_id, reason)
        return
    try:
        from arkyra.pipelines.runtime import get_runtime  # the run's settings (tests: theirs)

        settings = get_runtime().settings
        db = Database.from_settings(settings)
    except Exception as exc:
        logger.warning("pipeline alert not sent: %s", type(exc).__name__)
        return
    try:
        sender = Alerts(
            db,
            operator_organizations=operator_organizations(settings),
            dashboard_url=settings.public_url,
        )
        await pipeline_failed(organization_id, run_id, reason, alerts=sender)
    finally:
        await db.dispose()
