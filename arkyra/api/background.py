"""Work the API process runs beside its requests: the delivery worker and the alert sender.

The lifespan calls :func:`start_background` once the store and database are on ``app.state``
and registers :meth:`Background.stop` to run at shutdown::

    background = await start_background(app)
    owned.push_async_callback(background.stop)

Started: an :class:`~arkyra.alerts.Alerts` installed for this process (``app.state.alerts``),
and a :class:`~arkyra.delivery.worker.DeliveryWorker` draining the outbox in a task. The worker
reads credentials through the store; a 410 that disables an endpoint marks the integration
``error`` and alerts its organization.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from arkyra import alerts
from arkyra.credentials import CredentialStore
from arkyra.db.models import IntegrationStatus
from arkyra.delivery.worker import CredentialsLookup, DeliveryWorker, DisabledHook

logger = logging.getLogger("arkyra.api.background")

#: How long shutdown waits for an in-flight delivery batch before cancelling it.
STOP_GRACE_SECONDS = 10.0


def credentials_lookup(store: CredentialStore) -> CredentialsLookup:
    """The worker's ``(org, integration) -> credentials``, through the store (decrypted)."""

    async def lookup(organization_id: str, integration_id: str) -> Mapping[str, str]:
        return (await store.credentials_for_use(organization_id, integration_id))[1]

    return lookup


def disabled_hook(store: CredentialStore, sender: alerts.Alerts | None = None) -> DisabledHook:
    """On a disabled endpoint: mark the integration ``error``, then alert its organization."""

    async def disabled(organization_id: str, integration_id: str, reason: str) -> None:
        await store.mark(integration_id, IntegrationStatus.ERROR, f"endpoint disabled: {reason}")
        await alerts.delivery_disabled(organization_id, integration_id, reason, alerts=sender)

    return disabled


@dataclass
class Background:
    """What :func:`start_background` started; :meth:`stop` undoes all of it."""

    alerts: alerts.Alerts
    worker: DeliveryWorker | None
    task: asyncio.Task[None] | None
    stopping: asyncio.Event

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), STOP_GRACE_SECONDS)
            except TimeoutError:
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
        if self.worker is not None:
            await self.worker.aclose()
        if alerts.current() is self.alerts:
            alerts.install(None)


async def start_background(
    app: FastAPI, *, run_worker: bool = True, idle_seconds: float = 1.0, **worker_options: Any
) -> Background:
    """Install the alert sender and start the delivery worker (``run_worker=False``: no worker).

    ``worker_options`` go to :class:`DeliveryWorker` (tests pass a client and a resolver)."""
    state = app.state
    sender = alerts.Alerts(
        state.db,
        operator_organizations=alerts.operator_organizations(state.settings),
        dashboard_url=state.settings.public_url,
    )
    alerts.install(sender)
    state.alerts = sender
    stopping = asyncio.Event()
    worker: DeliveryWorker | None = None
    task: asyncio.Task[None] | None = None
    if run_worker:
        worker = DeliveryWorker(
            state.db,
            credentials_lookup(state.store),
            settings=state.settings,
            on_disabled=disabled_hook(state.store, sender),
            **worker_options,
        )
        task = asyncio.create_task(
            worker.run(stopping, idle_seconds=idle_seconds), name="delivery worker"
        )
        logger.info("delivery worker started")
    background = Background(sender, worker, task, stopping)
    state.background = background
    return background
