"""Deliveries to destinations (webhooks, Zapier, Make, n8n), each with an idempotency id.

The id is derived from the organization, the destination and the content delivered, so a
retried, resumed or re-triggered run sends the same ``webhook-id`` (receivers de-duplicate on
it) and, because the task is cached by that id, does not send a completed delivery again.
Transient failures and 429s are retried a few times with backoff; anything else fails the
delivery with the receiver's answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import Task, task
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from arkyra.errors import ProviderError
from arkyra.pipelines.activity_log import SentLog
from arkyra.pipelines.fallback import current_attempts, record_attempt
from arkyra.pipelines.limits import provider_slot
from arkyra.pipelines.models import Integration, StepResult, content_hash
from arkyra.pipelines.resilience import call_again
from arkyra.pipelines.runtime import get_runtime
from arkyra.tasks._paid import CACHE_EXPIRATION

DELIVERY_NAMESPACE = uuid.UUID("1c6f1f4e-7a0b-4d55-9c1e-6a7d2b9e0f11")
ITEM_EVENT = "arkyra.item.completed"
DIGEST_EVENT = "arkyra.digest.completed"


def delivery_id(organization_id: str, destination: Integration, payload: dict[str, Any]) -> str:
    """A stable id for "this content to this destination": ``msg_<uuid5>``."""
    digest = content_hash(organization_id, destination.identifier, destination.integration_id,
                          payload)  # fmt: skip
    return f"msg_{uuid.uuid5(DELIVERY_NAMESPACE, digest).hex}"


async def _retry_same_destination(task: Task[Any, Any], task_run: TaskRun, state: State) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, ProviderError) and type(exc).retry_same_provider


@task(
    name="push_result",
    task_run_name="deliver {destination.identifier}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_same_destination,
    cache_key_fn=lambda _ctx, parameters: f"delivery-{parameters['message_id']}",
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
async def push_result(
    organization_id: str,
    destination: Integration,
    message_id: str,
    event_type: str,
    payload: dict[str, Any],
) -> StepResult:
    """Send ``payload`` as one event to ``destination`` under ``message_id``."""
    runtime = get_runtime()
    sent = SentLog(runtime.settings, organization_id, destination, message_id, event_type, payload)
    try:
        provider = runtime.provider(destination.identifier)
        credentials = await runtime.credentials(organization_id, destination)
        event = {"type": event_type, "data": payload, "id": message_id}

        async def deliver() -> Any:
            sent.attempts += 1
            async with provider_slot(destination.identifier):
                return await provider.send_data(credentials, event)

        # Receivers de-duplicate on the webhook-id, so sending again is always safe.
        what = f"delivery {message_id}"
        answer = await call_again(deliver, runtime.retry, replayable=True, what=what)
    except Exception as exc:
        record_attempt(destination.identifier, exc)
        await sent.failed(exc)
        raise
    record_attempt(destination.identifier)
    await sent.delivered(answer)
    status = answer.get("status") if isinstance(answer, dict) else None
    return StepResult(
        kind="delivery",
        provider=destination.identifier,
        attempts=current_attempts(),
        output=message_id,
        details={"status": status, "event": event_type},
    )
