"""Incoming webhooks -> Prefect events: verification, de-duplication and the event shape.

Open-source Prefect has no webhook receiver, so ``POST /hooks/{source}`` (arkyra.api) verifies
the sender, drops repeats of a delivery, and emits ``arkyra.hook.received`` on the resource
``arkyra.hook.<source>``. A deployment trigger (``prefect.yaml``) matching that resource starts
a run with the event's payload as the ``hook`` parameter.

Senders:

- Standard Webhooks (our own senders, Svix, and anyone following the spec): ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature`` headers, verified with the ``standardwebhooks``
  library against the source's ``whsec_`` secret; the delivery id is ``webhook-id``.
- Notion: ``X-Notion-Signature: sha256=<hex HMAC-SHA256(raw body)>`` keyed by the subscription's
  ``verification_token``; the delivery id is the event's ``id``. The one-time handshake (a body
  holding only ``verification_token``) is kept for the operator, never trusted as a secret.

Secrets live in Prefect ``Secret`` blocks named ``hook-<source>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prefect.blocks.system import Secret
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HOOK_EVENT = "arkyra.hook.received"
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
EVENT_NAMESPACE = uuid.UUID("5b8f2a51-4f0e-4d2b-9b55-2f4a8e7c9d10")
MAX_BODY_BYTES = 256 * 1024
NOTION_SIGNATURE_HEADER = "x-notion-signature"


def resource_id(source: str) -> str:
    return f"arkyra.hook.{source}"


def secret_block_name(source: str) -> str:
    return f"hook-{source}"


class InvalidSignature(Exception):
    """The request did not prove it came from the source's sender."""


@dataclass(frozen=True)
class VerifiedHook:
    """A delivery whose sender was verified."""

    source: str
    delivery_id: str
    type: str
    entity_id: str | None
    body: dict[str, Any]

    @property
    def event_id(self) -> uuid.UUID:
        """The same delivery always gives the same event id."""
        return uuid.uuid5(EVENT_NAMESPACE, f"{self.source}\0{self.delivery_id}")

    def payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "delivery_id": self.delivery_id,
            "type": self.type,
            "entity_id": self.entity_id,
            "data": self.body,
        }


def is_notion_handshake(source: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """The verification token of Notion's one-time, unsigned subscription handshake."""
    if source != "notion" or NOTION_SIGNATURE_HEADER in {k.lower() for k in headers}:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and set(parsed) == {"verification_token"}:
        token = parsed["verification_token"]
        return token if isinstance(token, str) and token else None
    return None


def verify(source: str, secret: str, headers: Mapping[str, str], body: bytes) -> VerifiedHook:
    """Check the signature for ``source``; ``InvalidSignature`` when it does not match."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if source == "notion":
        parsed = _verify_notion(secret, lowered, body)
        delivery = str(parsed.get("id") or "")
        entity = parsed.get("entity") if isinstance(parsed.get("entity"), dict) else {}
        entity_id = entity.get("id") if isinstance(entity.get("id"), str) else None
    else:
        parsed = _verify_standard(secret, lowered, body)
        delivery = lowered.get("webhook-id", "")
        data = parsed.get("data") if isinstance(parsed.get("data"), dict) else {}
        entity_id = data.get("id") if isinstance(data.get("id"), str) else None
    if not delivery:
        raise InvalidSignature("the delivery has no id")
    kind = parsed.get("type")
    return VerifiedHook(
        source=source,
        delivery_id=delivery[:200],
        type=kind[:200] if isinstance(kind, str) else "",
        entity_id=entity_id,
        body=parsed,
    )


def _verify_standard(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    try:
        parsed = Webhook(secret).verify(body, headers)
    except (WebhookVerificationError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidSignature(str(exc) or "signature mismatch") from None
    if not isinstance(parsed, dict):
        raise InvalidSignature("the body is not a JSON object")
    return parsed


def _verify_notion(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    given = headers.get(NOTION_SIGNATURE_HEADER, "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidSignature("X-Notion-Signature does not match")
    try:
        parsed = json.loads(body)
    except ValueError:
        raise InvalidSignature("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidSignature("the body is not a JSON object")
    return parsed


def sign_notion(secret: str, body: bytes) -> str:
    """The ``X-Notion-Signature`` value Notion would send (tests, local tools)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- secrets and de-duplication ----------------------------------------------------------------


class HookSecrets(Protocol):
    async def secret(self, source: str) -> str | None: ...

    async def keep_pending(self, source: str, token: str) -> None: ...


class BlockHookSecrets:
    """Secrets from Prefect ``Secret`` blocks (``hook-<source>``), cached for a minute."""

    ttl_seconds = 60.0

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def secret(self, source: str) -> str | None:
        cached = self._cache.get(source)
        if cached and time.monotonic() - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            block = await Secret.aload(secret_block_name(source))
            raw = block.value
            value: str | None = raw.get_secret_value() if hasattr(raw, "get_secret_value") else None
            value = value if isinstance(value, str) and value else None
        except ValueError:  # no such block
            value = None
        self._cache[source] = (time.monotonic(), value)
        return value

    async def keep_pending(self, source: str, token: str) -> None:
        """Keep a handshake token for the operator to confirm (never used to verify)."""
        await Secret(value=token).asave(f"{secret_block_name(source)}-pending", overwrite=True)


class StaticHookSecrets:
    """Secrets from a mapping (tests, single-tenant set-ups)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = dict(secrets)
        self.pending: dict[str, str] = {}

    async def secret(self, source: str) -> str | None:
        return self.secrets.get(source)

    async def keep_pending(self, source: str, token: str) -> None:
        self.pending[source] = token


class DeliveryLog(Protocol):
    async def first_time(self, key: str) -> bool: ...

    async def forget(self, key: str) -> None: ...


class MemoryDeliveryLog:
    """Delivery ids seen in this process (bounded; one API process, or tests)."""

    def __init__(self, capacity: int = 50_000, ttl_seconds: float = 86_400) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def first_time(self, key: str) -> bool:
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen < self.ttl_seconds:
            return False
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)


class RedisDeliveryLog:
    """Delivery ids shared by every API process (``SET NX`` with a day's expiry)."""

    def __init__(self, url: str, ttl_seconds: int = 86_400) -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.ttl_seconds = ttl_seconds

    async def first_time(self, key: str) -> bool:
        return bool(await self.client.set(f"arkyra:hook:{key}", 1, nx=True, ex=self.ttl_seconds))

    async def forget(self, key: str) -> None:
        await self.client.delete(f"arkyra:hook:{key}")
