"""What the automation providers share: hook URL checks, the delivery request, one attempt.

Webhooks, Zapier, Make and n8n all deliver a JSON event ``{type, timestamp, data}`` with a POST
to a URL the user gave us. That URL is checked twice against the SSRF guard: when the
integration is connected and again before every delivery (DNS can change in between); the
guarded client then pins the connection to the vetted address. Redirects are never followed:
a 3xx is a failed attempt with a clear error.

Only a 2xx is success. A 410 means the endpoint is gone and must be disabled; 429, 502, 503
and 504 carry a ``Retry-After`` worth honouring; everything else is retried on the schedule
of :mod:`arkyra.delivery.queue`. One attempt is :func:`send_prepared`; the durable, retried
path is the outbox (:mod:`arkyra.delivery`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx

from arkyra.config import Settings
from arkyra.delivery import signing
from arkyra.errors import BadRequest, InvalidInput, ProviderError, RateLimited, Transient, UnsafeURL
from arkyra.http.retry import parse_retry_after
from arkyra.http.ssrf import REDIRECT_STATUSES, Resolver, check_url, guarded_client, safe_origin
from arkyra.providers.base import AccountInfo, NoInput, ThirdPartyProvider, expose

#: Statuses whose ``Retry-After`` the sender honours (the reference names 429, 502 and 504).
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
GONE_STATUS = 410
#: How much of a receiver's answer is kept for the delivery log.
ERROR_BODY_BYTES = 300
TEST_EVENT_TYPE = "webhook.test"
LISTENING_CAVEAT = (
    "A 2xx only proves that the URL accepted the request, not that a workflow is on and listening."
)


def listening_caveat(what: str) -> str:
    """The honest caveat for a catalogue description: a 200 does not prove anyone listens."""
    return (
        f"A 2xx only proves that the URL accepted the request, not that the {what} is on "
        "and listening."
    )


class Outcome(StrEnum):
    """What one attempt means for the delivery."""

    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # anything else worth another attempt later
    GONE = "gone"  # 410: disable the endpoint
    REFUSED = "refused"  # the URL failed the SSRF guard: never sent


@dataclass(frozen=True)
class HookURL:
    """A hook URL that passed the vendor's syntax check, with anything the user should know."""

    url: str
    host: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutgoingMessage:
    """One event as stored: ``id`` is the ``webhook-id``; ``body`` the exact envelope bytes."""

    id: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class PreparedDelivery:
    """A request ready to send (URL, headers, body); ``repr`` hides the URL and headers,
    which may carry the hook token or an auth header."""

    url: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    body: bytes


@dataclass(frozen=True)
class AttemptResult:
    """The result of one POST: outcome, HTTP status, latency and a secret-free error."""

    outcome: Outcome
    status: int | None
    latency_ms: float
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["ok"] = self.ok
        data["latency_ms"] = round(self.latency_ms, 3)
        return data


def new_message_id() -> str:
    """A fresh ``webhook-id`` (``msg_`` + 32 hex digits)."""
    return "msg_" + uuid.uuid4().hex


def url_error(reason: str) -> InvalidInput:
    return InvalidInput("invalid hook URL", {"url": reason})


def parse_url(url: str) -> httpx.URL:
    """Parse a user's URL with httpx (what will send it) or refuse it as a field error."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, AttributeError):
        raise url_error("is not a valid URL") from None
    if not parsed.host:
        raise url_error("has no host")
    return parsed


def require_scheme(parsed: httpx.URL, *, strict: bool) -> None:
    """HTTPS only, except in sandbox mode where the local receiver speaks plain HTTP."""
    allowed = ("https",) if strict else ("https", "http")
    if parsed.scheme not in allowed:
        raise url_error("must start with https://")


# -- one attempt --------------------------------------------------------------------------------


async def send_prepared(
    client: httpx.AsyncClient,
    prepared: PreparedDelivery,
    *,
    settings: Settings,
    resolver: Resolver | None = None,
    attempt_timeout: float | None = None,
) -> AttemptResult:
    """Check the URL against the SSRF guard, POST once (no redirects), classify the answer."""
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        await check_url(
            prepared.url, allow_loopback=settings.ssrf_allow_loopback, resolver=resolver
        )
    except UnsafeURL as exc:
        return AttemptResult(Outcome.REFUSED, None, elapsed(), str(exc))
    origin = safe_origin(prepared.url)
    request = client.build_request(
        "POST",
        prepared.url,
        content=prepared.body,
        headers=prepared.headers,
        timeout=attempt_timeout if attempt_timeout is not None else httpx.USE_CLIENT_DEFAULT,
    )
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            head = await _read_head(response)
        finally:
            await response.aclose()
    except UnsafeURL as exc:
        return AttemptResult(Outcome.REFUSED, None, elapsed(), str(exc))
    except httpx.TimeoutException as exc:
        return AttemptResult(Outcome.RETRY, None, elapsed(), f"{origin}: timed out ({_name(exc)})")
    except httpx.HTTPError as exc:
        return AttemptResult(
            Outcome.RETRY, None, elapsed(), f"{origin}: connection failed ({_name(exc)})"
        )
    return classify(response, head, elapsed())


def classify(response: httpx.Response, head: bytes, latency_ms: float) -> AttemptResult:
    """Map a receiver's answer to an outcome; only 2xx is success."""
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(Outcome.DELIVERED, status, latency_ms)
    if status in REDIRECT_STATUSES or 300 <= status < 400:
        target = _redirect_target(response)
        message = f"HTTP {status}: the receiver redirected{target}; redirects are not followed"
        return AttemptResult(Outcome.RETRY, status, latency_ms, message)
    text = head.decode("utf-8", "replace").strip()
    message = f"HTTP {status}" + (f": {text[:ERROR_BODY_BYTES]}" if text else "")
    if status == GONE_STATUS:
        return AttemptResult(Outcome.GONE, status, latency_ms, message)
    retry_after = (
        parse_retry_after(response.headers, max_wait=None) if status in THROTTLE_STATUSES else None
    )
    return AttemptResult(Outcome.RETRY, status, latency_ms, message, retry_after)


async def _read_head(response: httpx.Response) -> bytes:
    """At most ``ERROR_BODY_BYTES`` of the body: a receiver cannot make us read megabytes."""
    if 200 <= response.status_code < 300:
        return b""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= ERROR_BODY_BYTES:
            break
    return head[:ERROR_BODY_BYTES]


def _redirect_target(response: httpx.Response) -> str:
    """`` to scheme://host`` of a redirect's Location (never its path), or nothing."""
    location = response.headers.get("location")
    if not location:
        return ""
    try:
        return f" to {safe_origin(response.request.url.join(location))}"
    except (httpx.InvalidURL, RuntimeError):
        return " to an invalid URL"


def _name(exc: BaseException) -> str:
    return type(exc).__name__


# -- the provider base --------------------------------------------------------------------------


class HookProvider(ThirdPartyProvider):
    """Base of the automation providers: a user's URL is the destination (and the credential).

    ``resolver`` (settable after construction) replaces DNS for the SSRF guard in tests.
    With an injected ``client`` the guard still runs before every request; without one, each
    send uses a fresh :func:`~arkyra.http.ssrf.guarded_client`, which also pins the address.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(settings=settings, client=client)
        self.resolver = resolver

    @property
    def strict(self) -> bool:
        """Vendor host and scheme checks are relaxed only in sandbox mode."""
        return not self.settings.sandbox

    # -- URL checks --------------------------------------------------------------------------

    def parse_hook_url(self, url: str) -> HookURL:
        """The vendor's syntax check; subclasses override. Raises ``InvalidInput`` on ``url``."""
        parsed = parse_url(url)
        require_scheme(parsed, strict=self.strict)
        return HookURL(str(parsed), parsed.host)

    async def validate_url(self, credentials: Mapping[str, str]) -> HookURL:
        """Syntax, then the SSRF guard (DNS included); nothing is sent."""
        url = credentials.get("url")
        if not url:
            raise url_error("is required")
        hook = self.parse_hook_url(url)
        await check_url(
            hook.url, allow_loopback=self.settings.ssrf_allow_loopback, resolver=self.resolver
        )
        return hook

    def account_name(self, credentials: Mapping[str, str], hook: HookURL) -> str:
        return credentials.get("label") or self.title

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """Validate the URL (syntax and SSRF guard) without sending anything: a test POST has
        side effects, so it is the explicit ``test_webhook`` function instead."""
        hook = await self.validate_url(credentials)
        return AccountInfo(id=self.fingerprint(hook.url), name=self.account_name(credentials, hook))

    # -- requests ----------------------------------------------------------------------------

    def delivery_headers(
        self, credentials: Mapping[str, str], message: OutgoingMessage, timestamp: int
    ) -> dict[str, str]:
        """The id and timestamp headers (signed by the webhooks provider)."""
        return signing.unsigned_headers(message.id, timestamp)

    def extra_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        """Auth headers a hook needs (n8n header auth); none by default."""
        return {}

    def prepare_delivery(
        self, credentials: Mapping[str, str], message: OutgoingMessage, timestamp: int
    ) -> PreparedDelivery:
        """The request for one attempt at ``timestamp`` (unix seconds)."""
        url = credentials.get("url")
        if not url:
            raise url_error("is required")
        headers = {
            "content-type": "application/json",
            **self.extra_headers(credentials),
            **self.delivery_headers(credentials, message, timestamp),
        }
        return PreparedDelivery(url=url, headers=headers, body=message.body)

    async def attempt(
        self, credentials: Mapping[str, str], message: OutgoingMessage
    ) -> AttemptResult:
        """One delivery attempt, now, through the SSRF guard."""
        prepared = self.prepare_delivery(credentials, message, int(time.time()))
        if self._client is not None:
            return await send_prepared(
                self._client, prepared, settings=self.settings, resolver=self.resolver
            )
        async with guarded_client(self.settings, resolver=self.resolver) as client:
            return await send_prepared(
                client, prepared, settings=self.settings, resolver=self.resolver
            )

    # -- actions -----------------------------------------------------------------------------

    @expose
    async def test_webhook(self, credentials: Mapping[str, str], params: NoInput) -> dict[str, Any]:
        """Send one explicit ``webhook.test`` event now and report the status and latency.

        This has side effects (it may start a Zap, scenario or workflow), which is why it is a
        separate action and not part of connecting.
        """
        hook = await self.validate_url(credentials)
        message = self.message(TEST_EVENT_TYPE, {"test": True, "provider": self.identifier})
        result = await self.attempt(credentials, message)
        report = result.to_dict()
        report["webhook_id"] = message.id
        report["warnings"] = list(hook.warnings) + self.result_hints(result)
        report["note"] = LISTENING_CAVEAT
        return report

    def result_hints(self, result: AttemptResult) -> list[str]:
        """Vendor-specific readings of a test result (n8n's 404 and 401)."""
        return []

    def message(self, event_type: str, data: Any, message_id: str | None = None) -> OutgoingMessage:
        body = signing.envelope(event_type, data, datetime.now(UTC))
        return OutgoingMessage(message_id or new_message_id(), event_type, body)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> dict[str, Any]:
        """Deliver one event now, once: ``data = {"type": "a.b", "data": {...}, "id"?: ...}``.

        No retries here; durable delivery with retries over hours is the outbox
        (``arkyra.delivery.Outbox``). A failed attempt raises the mapped error.
        """
        if not isinstance(data, Mapping) or "type" not in data:
            raise InvalidInput("invalid event", {"type": "send {type, data} with a dotted type"})
        message = self.message(str(data["type"]), data.get("data"), data.get("id"))
        await self.validate_url(credentials)
        result = await self.attempt(credentials, message)
        if not result.ok:
            raise self.error_from_attempt(result)
        return {**result.to_dict(), "webhook_id": message.id}

    def error_from_attempt(self, result: AttemptResult) -> ProviderError | UnsafeURL:
        """The taxonomy error for a failed attempt (messages never hold the URL's path)."""
        message = result.error or "delivery failed"
        kw: dict[str, Any] = {"provider": self.identifier, "status": result.status}
        if result.outcome is Outcome.REFUSED:
            return UnsafeURL(message)
        if result.outcome is Outcome.GONE:
            return BadRequest(message, code="gone", **kw)
        if result.status == 429:
            return RateLimited(message, retry_after=result.retry_after, **kw)
        if result.status is None or result.status >= 500 or result.status in (408, 409):
            return Transient(message, **kw)
        response = httpx.Response(result.status)
        return self.error_from_status(response, message=message)
