"""Apprise: alerts and results to chat and push services (Slack, Discord, Telegram, ...).

- Credentials: ``url``, an Apprise URL such as ``slack://T.../B.../...`` (a secret: these URLs
  carry the service's tokens), and the usual optional ``label``.
- Apprise sends its own requests (with ``requests``), so the SSRF guard can neither vet nor pin
  the address. Only schemes whose destination host is fixed by the vendor are accepted
  (:data:`ACCEPTED_SCHEMES`; ``ntfy`` only in its ntfy.sh cloud form, read from the plugin).
  Every scheme that lets the user choose the host is refused with a pointer to the signed,
  SSRF-guarded ``webhooks`` integration. In sandbox mode with ``ssrf_allow_loopback``,
  ``json://`` and ``jsons://`` to a loopback address are accepted too, so tests and the demo
  deliver to the local receiver for real.
- Beyond the scheme: certificate checks stay on (``verify=no`` is refused), a template is
  refused (apprise would fetch it itself), redirects are not followed, apprise's own retries are
  off (the outbox retries), a failure always counts (``optional`` is forced off) and socket
  timeouts are capped.
- ``check_connection`` sends nothing (these services have no free identity call): it validates
  the URL; ``id`` is a keyed fingerprint of the URL, ``name`` the label or the service.
- ``send_data`` and outbox deliveries (:meth:`AppriseProvider.deliver_direct`) send one
  notification whose title and body come from the event (alerts: the reason and the link).
  Apprise reporting a failure is a retryable failure. ``test_notification`` sends on request.
- Errors name the scheme or the service, never the URL. Apprise logs full request URLs and
  payloads at DEBUG, and urllib3 logs request paths: a filter on both loggers drops records
  below INFO and blanks the token-like parts of the URL being used from the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from arkyra.errors import InvalidInput
from arkyra.providers.automation._hooks import (
    AttemptResult,
    HookProvider,
    HookURL,
    Outcome,
    OutgoingMessage,
    PreparedDelivery,
)
from arkyra.providers.base import AccountInfo, CredentialField, NoInput, expose, third_party

#: Schemes whose destination host the vendor fixes, and the service each one names.
ACCEPTED_SCHEMES: dict[str, str] = {
    "discord": "Discord",
    "gchat": "Google Chat",
    "ntfy": "ntfy.sh",
    "ntfys": "ntfy.sh",
    "pover": "Pushover",
    "slack": "Slack",
    "tgram": "Telegram",
}
#: Accepted only in sandbox mode with ``ssrf_allow_loopback``, and only to a loopback address.
SANDBOX_SCHEMES: dict[str, str] = {"json": "JSON (sandbox)", "jsons": "JSON (sandbox)"}
ACCEPTED_TEXT = (
    "discord://, gchat://, ntfy:// or ntfys:// (ntfy.sh topics only), pover:// (Pushover), "
    "slack://, tgram:// (Telegram)"
)
OWN_SERVER_HINT = (
    "To notify a server of your own, use the `webhooks` integration: it is signed and SSRF-guarded."
)
TEST_EVENT_TYPE = "notification.test"
TEST_TITLE = "ARKYRA test notification"
TEST_BODY = "This is a test notification from ARKYRA Pipelines: the Apprise integration works."
ACCEPTED_CAVEAT = "Success means the service accepted the message, not that anyone has read it."
ALERT_TITLES: dict[str, str] = {
    "breaker_opened": "a provider's circuit breaker opened",
    "integration_needs_reconnect": "an integration needs to be connected again",
    "delivery_disabled": "a delivery endpoint was disabled",
    "pipeline_failed": "a pipeline run failed",
}
MAX_URL_CHARS = 2000
MAX_BODY_CHARS = 4000
#: The per-attempt cap the delivery worker uses for HTTP deliveries too.
MAX_ATTEMPT_TIMEOUT_SECONDS = 30.0
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://")
URL_SEPARATORS = re.compile(r"[/:@?&=#,+;\s]")


# -- apprise's logger ---------------------------------------------------------------------------

#: Token-like parts of the URL in use in this context (apprise copies the context into the
#: threads it sends from, so its log records there see the same value).
_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "arkyra_apprise_secrets", default=()
)


class AppriseLogFilter(logging.Filter):
    """Drops apprise's DEBUG/TRACE records (full URLs, payloads) and redacts the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        secrets = _SECRETS.get()
        if secrets:
            text = record.getMessage()
            redacted = text
            for secret in secrets:
                redacted = redacted.replace(secret, "[redacted]")
            if redacted != text:
                record.msg, record.args = redacted, ()
        return True


#: Loggers that see the URL: apprise's own, and urllib3's, whose DEBUG lines carry the request
#: path (a Slack or Discord webhook path is its token).
FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool")


def _install_log_filter() -> None:
    for name in FILTERED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, AppriseLogFilter) for f in target.filters):
            target.addFilter(AppriseLogFilter())


_install_log_filter()


def secret_parts(url: str) -> tuple[str, ...]:
    """The URL and each token-like piece of it (quoted and unquoted), longest first."""
    rest = url.split("://", 1)[-1]
    parts = {url, rest}
    for piece in URL_SEPARATORS.split(rest):
        for candidate in (piece, unquote(piece)):
            if len(candidate) >= 6:
                parts.add(candidate)
    return tuple(sorted(parts, key=len, reverse=True))


@contextlib.contextmanager
def redacting(url: str) -> Iterator[None]:
    """Apprise log records written inside the block do not show ``url``'s tokens."""
    token = _SECRETS.set(secret_parts(url))
    try:
        yield
    finally:
        _SECRETS.reset(token)


def _apprise() -> ModuleType:
    """The apprise package, imported when first used (it loads ~160 plugins)."""
    import apprise

    return apprise


# -- what is sent -------------------------------------------------------------------------------


def notification_text(message: OutgoingMessage) -> tuple[str, str]:
    """Title and plain-text body for an event: alerts give their reason and link."""
    try:
        envelope = json.loads(message.body)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    event_type = str(envelope.get("type") or message.event_type)
    data = envelope.get("data")
    if event_type == TEST_EVENT_TYPE:
        return TEST_TITLE, TEST_BODY
    if event_type.startswith("alert.") and isinstance(data, dict):
        kind = str(data.get("kind") or event_type.removeprefix("alert."))
        title = "ARKYRA alert: " + ALERT_TITLES.get(kind, kind.replace("_", " "))
        lines = [str(data.get("reason") or "no reason given")]
        if data.get("link"):
            lines.append(f"Link: {data['link']}")
        return title, "\n".join(lines)
    body = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(body) > MAX_BODY_CHARS:
        body = body[: MAX_BODY_CHARS - 1] + "…"
    return f"ARKYRA: {event_type}", body


# -- the provider -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppriseTarget:
    """An accepted URL: its scheme, the service's name and the ready apprise plugin."""

    url: str = field(repr=False)
    scheme: str
    service: str
    plugin: Any = field(repr=False)


def url_error(reason: str) -> InvalidInput:
    return InvalidInput("invalid apprise URL", {"url": reason})


def _refusal(scheme: str) -> str:
    """Why ``scheme`` is refused; it is named only when it is a scheme apprise knows."""
    web = scheme in ("http", "https")
    known = web or scheme in SANDBOX_SCHEMES or _is_apprise_scheme(scheme)
    shown = f"{scheme}://" if known else "this scheme"
    native = " Give the service's apprise form (e.g. slack://...), not its web URL." if web else ""
    return (
        f"{shown} is not accepted: apprise sends its own requests, so only services whose host "
        f"the vendor fixes are allowed: {ACCEPTED_TEXT}.{native} {OWN_SERVER_HINT}"
    )


def _is_apprise_scheme(scheme: str) -> bool:
    try:
        return scheme in _apprise().NotificationManager()
    except Exception:  # a broken plugin manager must not turn a refusal into a 500
        return False


@third_party(
    identifier="apprise",
    title="Apprise",
    description=(
        "Send alerts and results to Slack, Discord, Telegram, Pushover, Google Chat or an "
        "ntfy.sh topic through an Apprise URL (slack://..., discord://..., tgram://...). Only "
        "services whose host the vendor fixes are accepted; for a server of your own use "
        "Webhooks. " + ACCEPTED_CAVEAT
    ),
    category="automation",
    fields=[
        CredentialField(
            "url",
            "Apprise URL",
            "secret",
            help=(
                "slack://, discord://, tgram://, pover://, gchat:// or ntfy://<topic> "
                "(ntfy.sh). It carries the service's tokens and is stored encrypted."
            ),
        )
    ],
)
class AppriseProvider(HookProvider):
    """Notifications sent by apprise; an automation provider so the outbox can hold them.

    It is a :class:`HookProvider` for the outbox and the delivery worker (which send through
    :meth:`deliver_direct` instead of an HTTP request) and for the shared ``send_data`` and
    error mapping; the HTTP request path (:meth:`prepare_delivery`) does not apply.
    """

    default_base_url = ""

    @property
    def loopback_allowed(self) -> bool:
        """``json://`` to loopback: sandbox mode and ``ssrf_allow_loopback`` together."""
        return self.settings.sandbox and self.settings.ssrf_allow_loopback

    @property
    def timeout(self) -> float:
        """Cap on each socket connect and read (the worker's HTTP cap)."""
        return min(self.settings.http_timeout_seconds, MAX_ATTEMPT_TIMEOUT_SECONDS)

    # -- URL checks --------------------------------------------------------------------------

    def inspect_url(self, url: str | None) -> AppriseTarget:
        """Scheme allow-list, apprise's own parsing, then the plugin's settings.

        Raises ``InvalidInput`` (field ``url``) naming at most the scheme, never the URL.
        """
        if not url or not url.strip():
            raise url_error("is required")
        url = url.strip()
        if len(url) > MAX_URL_CHARS:
            raise url_error(f"is longer than {MAX_URL_CHARS} characters")
        match = SCHEME.match(url)
        if match is None:
            raise url_error(
                f"is not an Apprise URL: it must start with a scheme such as slack://. "
                f"Accepted: {ACCEPTED_TEXT}."
            )
        scheme = match.group(1).lower()
        service = ACCEPTED_SCHEMES.get(scheme)
        if service is None and self.loopback_allowed:
            service = SANDBOX_SCHEMES.get(scheme)
        if service is None:
            raise url_error(_refusal(scheme))
        plugin = self._instantiate(url)
        if plugin is None:
            raise url_error(
                f"is not a valid {scheme}:// URL: apprise could not read it. Check it against "
                f"apprise's documentation for {service}."
            )
        self._check_plugin(scheme, plugin)
        self._harden(plugin)
        return AppriseTarget(url, scheme, service, plugin)

    def _instantiate(self, url: str) -> Any:
        apprise = _apprise()
        try:
            asset = apprise.AppriseAsset(storage_mode="memory")
        except TypeError:  # an apprise without persistent storage
            asset = apprise.AppriseAsset()
        with redacting(url):
            return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)

    def _check_plugin(self, scheme: str, plugin: Any) -> None:
        """What the scheme alone does not tell: ntfy's mode, the sandbox host, fetches, TLS."""
        if scheme in ("ntfy", "ntfys"):
            mode = getattr(plugin, "mode", None)
            if str(getattr(mode, "value", mode)) != "cloud":
                raise url_error(
                    f"{scheme}:// is accepted only for ntfy.sh topics (ntfy://<topic>): a "
                    f"self-hosted ntfy server is a host of your choosing. Accepted: "
                    f"{ACCEPTED_TEXT}. {OWN_SERVER_HINT}"
                )
        if scheme in SANDBOX_SCHEMES and not _is_loopback(getattr(plugin, "host", None)):
            raise url_error(
                f"{scheme}:// is accepted only in sandbox mode and only to a loopback address "
                f"such as 127.0.0.1. Accepted: {ACCEPTED_TEXT}. {OWN_SERVER_HINT}"
            )
        if getattr(plugin, "verify_certificate", True) is not True:
            raise url_error("verify=no is not accepted: certificate checks stay on")
        attachment = _apprise().AppriseAttachment
        for value in vars(plugin).values():
            if isinstance(value, attachment) and len(value):
                raise url_error(
                    "a template or attachment (?template=...) is not accepted: apprise would "
                    "fetch it itself"
                )

    def _harden(self, plugin: Any) -> None:
        """Failures count, the outbox retries (not apprise), no redirects, bounded sockets."""
        plugin.optional = False
        for name, value in (("retry", 0), ("wait", 0.0), ("redirects", False)):
            if hasattr(plugin, name):
                setattr(plugin, name, value)
        cap = self.timeout
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), cap)
        plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), cap)

    async def validate_url(self, credentials: Mapping[str, str]) -> HookURL:
        """The checks of :meth:`inspect_url`; ``host`` is the service's name (an apprise URL
        has tokens where other URLs have a host). Nothing is sent."""
        target = self.inspect_url(credentials.get("url"))
        return HookURL(target.url, target.service)

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """Validate the URL without sending: a test message posts to the channel, so it is the
        explicit ``test_notification`` instead."""
        target = self.inspect_url(credentials.get("url"))
        name = credentials.get("label") or target.service
        return AccountInfo(id=self.fingerprint(target.url), name=name)

    # -- sending -----------------------------------------------------------------------------

    def prepare_delivery(
        self, credentials: Mapping[str, str], message: OutgoingMessage, timestamp: int
    ) -> PreparedDelivery:
        """Not an HTTP request: apprise sends it (see :meth:`deliver_direct`)."""
        raise InvalidInput(
            "apprise deliveries are sent by apprise, not as one HTTP request",
            {"identifier": "use deliver_direct for apprise"},
        )

    async def deliver_direct(
        self, credentials: Mapping[str, str], message: OutgoingMessage
    ) -> AttemptResult:
        """The delivery worker's seam: one attempt sent by apprise; never raises."""
        return await self.attempt(credentials, message)

    async def attempt(
        self, credentials: Mapping[str, str], message: OutgoingMessage
    ) -> AttemptResult:
        """One notification now. A refused URL is never sent; a failure is worth a retry."""
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            target = self.inspect_url(credentials.get("url"))
        except InvalidInput as exc:
            reason = exc.errors.get("url") or str(exc)
            return AttemptResult(Outcome.REFUSED, None, elapsed(), f"apprise URL {reason}")
        title, body = notification_text(message)
        deadline = 2 * self.timeout
        try:
            async with asyncio.timeout(deadline):
                delivered = await self._notify(target, title, body)
        except TimeoutError:
            error = f"{target.service}: no answer within {deadline:.0f} s"
            return AttemptResult(Outcome.RETRY, None, elapsed(), error)
        except Exception as exc:  # apprise's own failure: record it, retry later
            error = f"{target.service}: apprise failed ({type(exc).__name__})"
            return AttemptResult(Outcome.RETRY, None, elapsed(), error)
        if delivered:
            return AttemptResult(Outcome.DELIVERED, None, elapsed())
        error = (
            f"{target.service} did not accept the notification (apprise's reason is in the "
            "worker log)"
        )
        return AttemptResult(Outcome.RETRY, None, elapsed(), error)

    async def _notify(self, target: AppriseTarget, title: str, body: str) -> bool:
        """Send with apprise's ``async_notify`` when it has one, else ``notify`` in a thread."""
        apprise = _apprise()
        sender = apprise.Apprise(asset=target.plugin.asset)
        sender.add(target.plugin)
        kwargs: dict[str, Any] = {
            "body": body,
            "title": title,
            "body_format": apprise.NotifyFormat.TEXT,
        }
        with redacting(target.url):
            notify_async = getattr(sender, "async_notify", None)
            if notify_async is not None:
                result = await notify_async(**kwargs)
            else:
                result = await asyncio.to_thread(sender.notify, **kwargs)
        try:
            return bool(result)  # apprise 2 returns an AppriseResult, true only on success
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()

    # -- actions -----------------------------------------------------------------------------

    @expose
    async def test_notification(
        self, credentials: Mapping[str, str], params: NoInput
    ) -> dict[str, Any]:
        """Send one test notification now and report whether it was accepted and the latency.

        It posts a real message to the channel, which is why it is a separate action and not
        part of connecting.
        """
        target = self.inspect_url(credentials.get("url"))
        message = self.message(TEST_EVENT_TYPE, {"test": True, "provider": self.identifier})
        result = await self.attempt(credentials, message)
        return {**result.to_dict(), "service": target.service, "note": ACCEPTED_CAVEAT}


# ``test_webhook`` (inherited) describes an HTTP POST; apprise's test is ``test_notification``.
AppriseProvider.exposed.pop("test_webhook", None)


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str) or not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
