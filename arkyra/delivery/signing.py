"""Standard Webhooks v1 signing: secrets, the event envelope and the three signed headers.

Contract: ``reference/provider-contracts-media-automation.md`` section 8.

- A secret is ``whsec_`` + base64 of 24 to 64 random bytes; the decoded bytes are the HMAC key.
- The signed content is ``"{webhook-id}.{webhook-timestamp}.{raw body}"`` (HMAC-SHA256), sent
  as ``v1,<base64>``. During a rotation one signature is sent per active secret, separated by
  spaces, so a receiver holding either secret verifies.
- The signature itself is computed by the ``standardwebhooks`` library, the same code receivers
  use to verify, so sender and verifier cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from arkyra.errors import InvalidInput

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
#: The reference asks for payloads under 20 KB.
MAX_PAYLOAD_BYTES = 20 * 1024
EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+", re.ASCII)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside ``secret``; ``InvalidInput`` (never echoing it) when malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInput("invalid signing secret", {"secret": "must start with whsec_"})
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "invalid signing secret", {"secret": "must be whsec_ + base64"}
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidInput(
            "invalid signing secret",
            {"secret": f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"},
        )
    return key


def parse_secrets(value: str) -> list[str]:
    """The active secrets in a credential value: one, or several separated by spaces or commas
    during a rotation (newest first). Each is validated."""
    found = [part for part in re.split(r"[\s,]+", value.strip()) if part]
    if not found:
        raise InvalidInput("invalid signing secret", {"secret": "is empty"})
    for secret in found:
        secret_key(secret)
    return list(dict.fromkeys(found))


def sign(message_id: str, timestamp: int, body: bytes, active_secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per active secret, space-separated."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    text = body.decode("utf-8")
    return " ".join(
        Webhook(secret_key(secret)).sign(message_id, when, text) for secret in active_secrets
    )


def signed_headers(
    message_id: str, timestamp: int, body: bytes, active_secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the id never changes per event)."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(message_id, timestamp, body, active_secrets),
    }


def unsigned_headers(message_id: str, timestamp: int) -> dict[str, str]:
    """The id and timestamp headers for hooks that take no signature (Zapier, Make, n8n)."""
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp)}


def check_event_type(event_type: str) -> str:
    """Event types are dotted lower-case names (``video.rendered``)."""
    if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
        raise InvalidInput(
            "invalid event type", {"type": "use a dotted lower-case name, e.g. video.rendered"}
        )
    if len(event_type) > 120:
        raise InvalidInput("invalid event type", {"type": "at most 120 characters"})
    return event_type


def envelope(event_type: str, data: Any, occurred_at: datetime) -> bytes:
    """The JSON body ``{type, timestamp, data}``: compact, ASCII, at most 20 KB.

    It is built once per event and stored, so every retry sends the same bytes.
    """
    check_event_type(event_type)
    when = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    body = json.dumps(
        {"type": event_type, "timestamp": when, "data": data},
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    ).encode("ascii")
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            "payload too large",
            {"data": f"the event is {len(body)} bytes; deliveries must stay under 20 KB"},
        )
    return body
