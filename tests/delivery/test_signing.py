"""Standard Webhooks signing, checked with the standardwebhooks library's own verifier."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from arkyra.delivery import signing
from arkyra.errors import InvalidInput

BODY = signing.envelope("video.rendered", {"id": "v1", "title": "Été"}, datetime.now(UTC))


def headers_for(secrets: list[str], *, at: int | None = None, body: bytes = BODY) -> dict[str, str]:
    return signing.signed_headers("msg_123", at or int(time.time()), body, secrets)


def test_generated_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert signing.secret_key(first) == base64.b64decode(first[6:])


def test_a_signature_verifies_with_the_library() -> None:
    secret = signing.generate_secret()
    headers = headers_for([secret])
    assert headers["webhook-id"] == "msg_123"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_tampering_is_detected() -> None:
    secret = signing.generate_secret()
    headers = headers_for([secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"v1", b"v2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)


@pytest.mark.parametrize("offset", [-600, 600])
def test_timestamps_outside_five_minutes_are_refused(offset: int) -> None:
    secret = signing.generate_secret()
    headers = headers_for([secret], at=int(time.time()) + offset)
    with pytest.raises(WebhookVerificationError, match=r"too (old|new)"):
        Webhook(secret).verify(BODY, headers)


def test_rotation_sends_one_signature_per_secret_and_either_verifies() -> None:
    new, old = signing.generate_secret(), signing.generate_secret()
    active = signing.parse_secrets(f"{new} {old}")
    headers = headers_for(active)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(BODY, headers)
    assert Webhook(old).verify(BODY, headers)
    assert signing.parse_secrets(f"{new},{old}, {new}") == [new, old]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain-value-xyz",
        "whsec_",
        "whsec_!!!notbase64!!!",
        "whsec_" + base64.b64encode(b"short").decode(),
    ],
)
def test_malformed_secrets_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        signing.parse_secrets(bad)
    assert "secret" in caught.value.errors
    if bad:
        assert bad not in str(caught.value)
        assert bad not in str(caught.value.errors)


def test_the_envelope_is_compact_typed_and_bounded() -> None:
    when = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    body = signing.envelope("video.rendered", {"x": 1}, when)
    assert body == b'{"type":"video.rendered","timestamp":"2026-11-25T12:00:00Z","data":{"x":1}}'
    with pytest.raises(InvalidInput, match="event type"):
        signing.envelope("NotDotted", {}, when)
    with pytest.raises(InvalidInput, match="too large") as caught:
        signing.envelope("video.rendered", {"blob": "x" * 21_000}, when)
    assert "20 KB" in caught.value.errors["data"]
