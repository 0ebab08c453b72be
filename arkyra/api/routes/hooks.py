"""``POST /hooks/{source}``: signed incoming webhooks -> Prefect events (design.md section 7).

The sender is verified on the raw bytes (Standard Webhooks, or Notion's signature); a bad or
missing signature is 401 and nothing is emitted. A delivery seen before is acknowledged (200)
without a second event. A new one is emitted as ``arkyra.hook.received`` with a deterministic
event id; a deployment trigger turns it into a flow run. No JWT here: the signature is the
authentication, and the answer never says more than accepted or refused.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from prefect.events import emit_event

from arkyra.config import get_settings
from arkyra.pipelines.hooks import (
    EVENT_NAMESPACE,
    HOOK_EVENT,
    MAX_BODY_BYTES,
    SOURCE_PATTERN,
    BlockHookSecrets,
    DeliveryLog,
    HookSecrets,
    InvalidSignature,
    MemoryDeliveryLog,
    RedisDeliveryLog,
    is_notion_handshake,
    resource_id,
    verify,
)
from arkyra.providers.jobs import RenderJob
from arkyra.providers.video.callbacks import SOURCES as RENDER_SOURCES
from arkyra.providers.video.callbacks import (
    CallbackIgnored,
    CallbackRejected,
    handle_render_callback,
)
from arkyra.providers.video.completion import WatcherRegistry

router = APIRouter(tags=["hooks"])
logger = logging.getLogger("arkyra.hooks")

_default_secrets = BlockHookSecrets()
_default_log: DeliveryLog | None = None

#: Render completions (HeyGen, Synthesia, D-ID) are emitted as ``render.<status>`` events.
RENDER_EVENT_PREFIX = "render."
#: The process's render watchers: a job awaited in this process completes from its callback.
render_watchers = WatcherRegistry()


def get_hook_secrets(request: Request) -> HookSecrets:
    """``app.state.hook_secrets`` when set (tests), else Prefect ``Secret`` blocks."""
    return getattr(request.app.state, "hook_secrets", None) or _default_secrets


def get_delivery_log(request: Request) -> DeliveryLog:
    """``app.state.hook_delivery_log`` when set, else Redis (if configured) or memory."""
    configured = getattr(request.app.state, "hook_delivery_log", None)
    if configured is not None:
        return configured
    global _default_log
    if _default_log is None:
        settings = getattr(request.app.state, "settings", None) or get_settings()
        _default_log = (
            RedisDeliveryLog(settings.redis_url) if settings.redis_url else MemoryDeliveryLog()
        )
    return _default_log


SecretsDep = Annotated[HookSecrets, Depends(get_hook_secrets)]
DeliveryLogDep = Annotated[DeliveryLog, Depends(get_delivery_log)]


def _refused() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid signature")


@router.post("/hooks/{source}", status_code=status.HTTP_202_ACCEPTED, response_model=None)
async def receive_hook(
    source: str, request: Request, secrets: SecretsDep, deliveries: DeliveryLogDep
) -> dict[str, Any] | JSONResponse:
    """Verify, de-duplicate and emit one incoming webhook delivery."""
    if not SOURCE_PATTERN.match(source):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="unknown hook source")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="body too large")
    headers = dict(request.headers)
    if source in RENDER_SOURCES:
        return await _render_callback(source, request, body, secrets, deliveries)
    secret = await secrets.secret(source)
    token = is_notion_handshake(source, headers, body)
    if token is not None:
        await secrets.keep_pending(source, token)
        logger.warning(
            "Notion sent a subscription verification token; it is kept in the Secret block "
            "hook-notion-pending: confirm it in Notion, then save it as hook-notion"
        )
        return JSONResponse({"verification": "received"}, status_code=status.HTTP_200_OK)
    if secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="unknown hook source")
    try:
        hook = verify(source, secret, headers, body)
    except InvalidSignature as exc:
        logger.info("refused a %s hook: %s", source, exc)
        raise _refused() from None
    key = f"{source}:{hook.delivery_id}"
    if not await deliveries.first_time(key):
        return JSONResponse(
            {"accepted": True, "duplicate": True, "event_id": str(hook.event_id)},
            status_code=status.HTTP_200_OK,
        )
    emitted = emit_event(
        event=HOOK_EVENT,
        resource={"prefect.resource.id": resource_id(source), "prefect.resource.name": source},
        payload=hook.payload(),
        id=hook.event_id,
    )
    if emitted is None:  # no Prefect API configured: let the sender retry later
        await deliveries.forget(key)
        logger.error("no Prefect API to send the %s hook event to (set PREFECT_API_URL)", source)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="events unavailable")
    return {"accepted": True, "duplicate": False, "event_id": str(hook.event_id)}


# -- render completion callbacks ---------------------------------------------------------------


def get_render_watchers(request: Request) -> WatcherRegistry:
    """``app.state.render_watchers`` when set, else the process-wide registry."""
    return getattr(request.app.state, "render_watchers", None) or render_watchers


def render_event_id(job: RenderJob) -> uuid.UUID:
    """The same completion always gets the same event id (vendors retry callbacks)."""
    return uuid.uuid5(EVENT_NAMESPACE, f"render:{job.provider}:{job.id}:{job.status}")


def render_event_payload(job: RenderJob) -> dict[str, Any]:
    """What the ``render.<status>`` event carries: the job without the vendor's raw body."""
    return job.model_dump(mode="json", exclude={"raw"})


async def _render_callback(
    source: str, request: Request, body: bytes, secrets: HookSecrets, deliveries: DeliveryLog
) -> dict[str, Any] | JSONResponse:
    """Verify a vendor's render completion, hand it to a waiting watcher and emit it.

    The secret (HeyGen, Synthesia) or URL token (D-ID) is the Prefect ``Secret`` block
    ``hook-<source>``; several values separated by spaces are all accepted (rotation).
    """
    configured = await secrets.secret(source)
    keys = configured.split() if configured else []
    try:
        job = handle_render_callback(
            source, request.headers, body, secrets={source: keys}, query=request.query_params
        )
    except CallbackRejected as exc:
        logger.info("refused a %s render callback: %s", source, exc)
        raise _refused() from None
    except CallbackIgnored:
        return JSONResponse({"accepted": True, "ignored": True}, status_code=status.HTTP_200_OK)
    event_id = render_event_id(job)
    key = f"render:{source}:{job.id}:{job.status}"
    if not await deliveries.first_time(key):
        return JSONResponse(
            {"accepted": True, "duplicate": True, "event_id": str(event_id)},
            status_code=status.HTTP_200_OK,
        )
    completed = get_render_watchers(request).deliver(job)
    emitted = emit_event(
        event=f"{RENDER_EVENT_PREFIX}{job.status}",
        resource={
            "prefect.resource.id": f"arkyra.render.{source}.{job.id}",
            "prefect.resource.name": f"{source} {job.id}",
        },
        payload=render_event_payload(job),
        id=event_id,
    )
    if emitted is None and not completed:  # nobody heard it: let the vendor retry
        await deliveries.forget(key)
        logger.error("no Prefect API to send the %s render event to (set PREFECT_API_URL)", source)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="events unavailable")
    return {"accepted": True, "duplicate": False, "event_id": str(event_id)}
