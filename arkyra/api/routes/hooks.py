"""``POST /hooks/{source}``: signed incoming webhooks -> Prefect events (design.md section 7).

The sender is verified on the raw bytes (Standard Webhooks, or Notion's signature); a bad or
missing signature is 401 and nothing is emitted. A delivery seen before is acknowledged (200)
without a second event. A new one is emitted as ``arkyra.hook.received`` with a deterministic
event id; a deployment trigger turns it into a flow run. No JWT here: the signature is the
authentication, and the answer never says more than accepted or refused.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from prefect.events import emit_event

from arkyra.config import get_settings
from arkyra.pipelines.hooks import (
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

router = APIRouter(tags=["hooks"])
logger = logging.getLogger("arkyra.hooks")

_default_secrets = BlockHookSecrets()
_default_log: DeliveryLog | None = None


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
