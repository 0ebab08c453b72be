"""The apprise provider: vendor-fixed schemes only, URLs never echoed, a secret-free fingerprint,
real deliveries to the loopback receiver in sandbox mode, Slack with ``requests`` patched (no
socket), and the delivery worker sending ``apprise`` outbox entries with retries."""

from __future__ import annotations

import json
import random
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from arkyra.alerts import Alerts
from arkyra.blocks.credentials import HookUrlCredentials
from arkyra.config import Settings
from arkyra.credentials.store import CredentialStore
from arkyra.db.models import Delivery, DeliveryStatus, IntegrationStatus
from arkyra.db.session import Database
from arkyra.delivery.queue import delivery_log
from arkyra.delivery.worker import DeliveryWorker, DirectDelivery
from arkyra.errors import InvalidInput, Transient
from arkyra.providers import catalogue_entry, get_provider, provider_class
from arkyra.providers.automation import apprise as apprise_module
from arkyra.providers.automation._hooks import OutgoingMessage
from arkyra.providers.automation.apprise import AppriseProvider, secret_parts
from arkyra.sandbox.server import RunningSandbox, running_sandbox
from arkyra.security.vault import Vault
from tests.api.test_alerts import MemoryMirror, add_integration
from tests.conftest import make_settings
from tests.delivery.conftest import Credentials, FakeClock

ORG = "org-apprise"
SLACK_TOKENS = "T0000TEST/B0000TEST/testtokentesttokentest00"
SLACK_URL = f"slack://{SLACK_TOKENS}/"
SLACK_ENDPOINT = f"https://hooks.slack.com/services/{SLACK_TOKENS}"

ACCEPTED = {
    SLACK_URL: "Slack",
    "discord://000000000000000000/testwebhooktoken-0000": "Discord",
    "tgram://123456789:testbottoken_testbottoken/987654": "Telegram",
    "pover://testuserkeytestuserkey0000@testapptokentestapptoken00": "Pushover",
    "gchat://testworkspace/testwebhookkey/testwebhooktoken": "Google Chat",
    "ntfy://testtopic-arkyra": "ntfy.sh",
    "ntfys://testtopic-arkyra": "ntfy.sh",
}

REFUSED = [
    "json://collector.example.com/secretpath000",
    "jsons://collector.example.com/secretpath000",
    "xml://collector.example.com/secretpath000",
    "form://collector.example.com/secretpath000",
    "gotify://gotify.example.com/gotifytoken0000",
    "mmost://mattermost.example.com/mmosttoken0000",
    "matrix://matrixuser:matrixpass0000@matrix.example.com/",
    "apprise://apprise.example.com/apprisetoken0000",
    "mailto://mailuser:mailpass0000@smtp.example.com",
    "workflows://flows.example.com/workflowid0000/signature0000",
    f"https://hooks.slack.com/services/{SLACK_TOKENS}",
    "ntfy://ntfy.example.com/privatetopic0000",
    "ntfy://ntfy.sh/privatetopic0000",
    "notascheme://whatever/sometoken0000",
]


def token_pieces(url: str) -> list[str]:
    """The parts of ``url`` that could be a token (every test token holds a digit), the host
    and the whole URL: what an error must never contain."""
    rest = url.split("://", 1)[-1]
    pieces = [p for p in re.split(r"[/:@?&=#]", rest) if len(p) >= 6 and re.search(r"\d", p)]
    return [*pieces, url, rest]


@pytest.fixture
def strict(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sandbox=False)


@pytest.fixture
def loopback(tmp_path: Path) -> Settings:
    """Sandbox mode with loopback allowed: json:// to 127.0.0.1 is accepted."""
    return make_settings(tmp_path, sandbox=True, ssrf_allow_loopback=True)


def apprise_provider(settings: Settings) -> AppriseProvider:
    provider = get_provider("apprise", settings=settings)
    assert isinstance(provider, AppriseProvider)
    return provider


@pytest.fixture(scope="module")
def receiver() -> Iterator[RunningSandbox]:
    """The sandbox served by uvicorn on 127.0.0.1: apprise sends to it over a real socket."""
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def control(receiver: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=receiver.url) as client:
        yield client


def json_url(receiver: RunningSandbox, path: str) -> str:
    return receiver.url.replace("http://", "json://", 1) + f"/receiver/{path}"


async def received(control: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    response = await control.get(f"/receiver/_control/{path}")
    response.raise_for_status()
    return [json.loads(d["body"]) for d in response.json()["deliveries"]]


class NoSockets:
    """Makes every outgoing connection fail loudly and remembers that one was tried."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def connect(self, sock: socket.socket, address: Any) -> None:
        self.attempts.append(address)
        raise AssertionError(f"a socket was opened to {address!r}")

    def create_connection(self, address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        self.attempts.append(address)
        raise AssertionError(f"a connection was opened to {address!r}")


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> NoSockets:
    guard = NoSockets()
    monkeypatch.setattr(socket.socket, "connect", guard.connect)
    monkeypatch.setattr(socket, "create_connection", guard.create_connection)
    return guard


class FakeSlack:
    """Stands in for ``requests.request`` where apprise's Slack plugin calls it."""

    def __init__(self, status: int = 200, content: bytes = b"ok") -> None:
        self.status = status
        self.content = content
        self.calls: list[dict[str, Any]] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append({"method": method, "url": url, **kwargs})
        response = requests.Response()
        response.status_code = self.status
        response._content = self.content
        return response


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch, no_sockets: NoSockets) -> FakeSlack:
    from apprise.plugins import slack as slack_plugin

    fake = FakeSlack()
    monkeypatch.setattr(slack_plugin.requests, "request", fake)
    return fake


# -- the scheme allow-list ----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "service"), ACCEPTED.items(), ids=list(ACCEPTED.values()))
async def test_vendor_fixed_schemes_are_accepted_without_sending(
    strict: Settings, url: str, service: str, no_sockets: NoSockets
) -> None:
    provider = apprise_provider(strict)
    target = provider.inspect_url(url)
    assert target.service == service
    account = await provider.check_connection({"url": url})
    assert account.name == service
    assert no_sockets.attempts == []


@pytest.mark.parametrize("url", REFUSED)
def test_schemes_that_choose_the_host_are_refused_naming_the_accepted_ones(
    strict: Settings, url: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        apprise_provider(strict).inspect_url(url)
    reason = caught.value.errors["url"]
    assert "slack://" in reason
    assert "tgram://" in reason
    assert "`webhooks` integration" in reason
    text = f"{caught.value} {caught.value.errors}"
    for piece in token_pieces(url):
        assert piece not in text, piece


def test_a_refused_scheme_is_named_only_when_apprise_knows_it(strict: Settings) -> None:
    provider = apprise_provider(strict)
    with pytest.raises(InvalidInput, match="invalid apprise URL") as known:
        provider.inspect_url("gotify://gotify.example.com/gotifytoken0000")
    assert known.value.errors["url"].startswith("gotify:// is not accepted")
    with pytest.raises(InvalidInput) as unknown:
        provider.inspect_url("xoxbsecretish0000://whatever")
    assert unknown.value.errors["url"].startswith("this scheme is not accepted")
    assert "xoxbsecretish0000" not in str(unknown.value.errors)


def test_json_is_refused_outside_the_loopback_sandbox(tmp_path: Path, loopback: Settings) -> None:
    local = "json://127.0.0.1:9/receiver/x"
    sandbox_without_loopback = make_settings(tmp_path, sandbox=True, ssrf_allow_loopback=False)
    production_with_loopback = make_settings(tmp_path, sandbox=False, ssrf_allow_loopback=True)
    for settings in (sandbox_without_loopback, production_with_loopback):
        with pytest.raises(InvalidInput, match="invalid apprise URL"):
            apprise_provider(settings).inspect_url(local)
    provider = apprise_provider(loopback)
    assert provider.inspect_url(local).service == "JSON (sandbox)"
    assert provider.inspect_url("jsons://[::1]:9/receiver/x").scheme == "jsons"
    for elsewhere in ("json://10.0.0.5/x", "json://collector.example.com/x", "json://localhost/x"):
        with pytest.raises(InvalidInput) as caught:
            provider.inspect_url(elsewhere)
        assert "loopback address" in caught.value.errors["url"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "is required"),
        ("   ", "is required"),
        ("not a url at all", "must start with a scheme"),
        ("slack://T0000TEST/", "is not a valid slack:// URL"),
        ("discord://000000000000000000/", "is not a valid discord:// URL"),
        ("slack://" + "a" * 2100, "longer than"),
    ],
)
def test_malformed_urls_are_refused_with_a_clear_message(
    strict: Settings, url: str, expected: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        apprise_provider(strict).inspect_url(url)
    assert expected in caught.value.errors["url"]
    if url.strip():
        assert url.strip() not in str(caught.value.errors)


def test_apprise_options_that_would_weaken_the_send_are_refused_or_overridden(
    strict: Settings, no_sockets: NoSockets
) -> None:
    provider = apprise_provider(strict)
    with pytest.raises(InvalidInput, match="invalid apprise URL") as insecure:
        provider.inspect_url(SLACK_URL + "?verify=no")
    assert "certificate" in insecure.value.errors["url"]
    with pytest.raises(InvalidInput) as template:
        provider.inspect_url(SLACK_URL + "?template=http://169.254.169.254/latest/meta-data")
    assert "fetch it itself" in template.value.errors["url"]
    plugin = provider.inspect_url(SLACK_URL + "?optional=yes&retry=5&rto=900&cto=900").plugin
    assert plugin.optional is False  # a failure must be seen as one
    assert getattr(plugin, "retry", 0) == 0  # the outbox retries, not apprise
    assert getattr(plugin, "redirects", False) is False
    assert plugin.socket_read_timeout <= provider.timeout
    assert plugin.socket_connect_timeout <= provider.timeout
    assert no_sockets.attempts == []


# -- connecting ---------------------------------------------------------------------------------


async def test_check_connection_gives_a_stable_secret_free_fingerprint(strict: Settings) -> None:
    provider = apprise_provider(strict)
    first = await provider.check_connection({"url": SLACK_URL})
    again = await provider.check_connection({"url": "  " + SLACK_URL + " "})
    other = await provider.check_connection({"url": "ntfy://testtopic-arkyra"})
    labelled = await provider.check_connection({"url": SLACK_URL, "label": "Ops room"})
    assert first.id == again.id == labelled.id
    assert first.id != other.id
    assert re.fullmatch(r"fp_[0-9a-f]{32}", first.id)
    for piece in token_pieces(SLACK_URL):
        assert piece not in first.id
    assert (first.name, labelled.name) == ("Slack", "Ops room")
    # keyed: another fingerprint key gives another id for the same URL
    rekeyed = make_settings(strict.home, sandbox=False, fingerprint_key="another-key-000000000")
    assert (await apprise_provider(rekeyed).check_connection({"url": SLACK_URL})).id != first.id


def test_catalogue_entry_and_credentials(strict: Settings) -> None:
    entry = catalogue_entry(provider_class("apprise"))
    assert entry["category"] == "automation"
    assert entry["functions"] == ["test_notification"]
    [url_field] = entry["fields"]
    assert (url_field["name"], url_field["kind"], url_field["secret"]) == ("url", "secret", True)
    clean = AppriseProvider.validate_credentials({"url": f" {SLACK_URL} ", "label": "Ops"})
    assert clean == {"url": SLACK_URL, "label": "Ops"}
    with pytest.raises(InvalidInput):
        AppriseProvider.validate_credentials({"url": SLACK_URL, "secret": "x"})
    assert isinstance(apprise_provider(strict), DirectDelivery)


class RecordingMirror(MemoryMirror):
    def __init__(self) -> None:
        self.saved: list[Any] = []

    async def save(self, name: str, block: Any) -> str:
        self.saved.append(block)
        return await super().save(name, block)


async def test_connecting_stores_the_url_in_a_secret_block(db: Database, strict: Settings) -> None:
    mirror = RecordingMirror()
    store = CredentialStore(db, Vault.from_settings(strict), mirror, settings=strict)  # type: ignore[arg-type]
    integration = await store.connect(ORG, "apprise", {"url": SLACK_URL, "label": "Ops room"})
    assert (integration.identifier, integration.name) == ("apprise", "Ops room")
    [block] = mirror.saved
    assert isinstance(block, HookUrlCredentials)
    assert block.credentials() == {"url": SLACK_URL, "label": "Ops room"}
    with pytest.raises(InvalidInput, match="invalid apprise URL"):
        await store.connect(ORG, "apprise", {"url": "gotify://gotify.example.com/tok0000"})
    assert len(mirror.saved) == 1


def test_the_http_request_path_does_not_apply(strict: Settings) -> None:
    message = OutgoingMessage("msg_1", "a.b", b'{"type":"a.b","data":{}}')
    with pytest.raises(InvalidInput, match="sent by apprise"):
        apprise_provider(strict).prepare_delivery({"url": SLACK_URL}, message, 0)


# -- sending --------------------------------------------------------------------------------------


async def test_slack_send_goes_to_the_vendor_host_without_opening_a_socket(
    strict: Settings, slack: FakeSlack, no_sockets: NoSockets
) -> None:
    provider = apprise_provider(strict)
    event = {
        "type": "alert.pipeline_failed",
        "data": {"kind": "pipeline_failed", "reason": "all 3 items failed", "link": "/ui/x"},
    }
    answer = await provider.send_data({"url": SLACK_URL}, event)
    assert answer["ok"] is True
    assert answer["outcome"] == "delivered"
    [call] = slack.calls
    assert (call["method"], call["url"]) == ("post", SLACK_ENDPOINT)
    assert call["verify"] is True
    assert call.get("allow_redirects") is False
    assert max(call["timeout"]) <= provider.timeout
    payload = json.loads(call["data"])
    text = json.dumps(payload)
    assert "ARKYRA alert: a pipeline run failed" in text
    assert "all 3 items failed" in text
    assert "/ui/x" in text
    assert no_sockets.attempts == []


async def test_a_service_refusal_is_a_transient_error_without_the_url(
    strict: Settings, slack: FakeSlack
) -> None:
    slack.status, slack.content = 500, b"internal_error"
    with pytest.raises(Transient) as caught:
        await apprise_provider(strict).send_data({"url": SLACK_URL}, {"type": "a.b", "data": {}})
    assert "Slack did not accept the notification" in str(caught.value)
    for piece in token_pieces(SLACK_URL):
        assert piece not in str(caught.value)


async def test_a_refused_url_is_never_sent(strict: Settings, no_sockets: NoSockets) -> None:
    url = "json://collector.example.com/secretpath000"
    message = apprise_provider(strict).message("a.b", {})
    result = await apprise_provider(strict).deliver_direct({"url": url}, message)
    assert result.outcome == "refused"
    assert "json:// is not accepted" in (result.error or "")
    assert "secretpath000" not in (result.error or "")
    assert no_sockets.attempts == []


async def test_sandbox_json_delivery_reaches_the_loopback_receiver(
    loopback: Settings, receiver: RunningSandbox, control: httpx.AsyncClient
) -> None:
    path = f"apprise-{uuid.uuid4().hex[:8]}"
    provider = apprise_provider(loopback)
    event = {
        "type": "alert.delivery_disabled",
        "data": {"kind": "delivery_disabled", "reason": "410 Gone", "link": "/ui/integrations/i"},
    }
    answer = await provider.send_data({"url": json_url(receiver, path)}, event)
    assert answer["ok"] is True
    [body] = await received(control, path)
    assert body["title"] == "ARKYRA alert: a delivery endpoint was disabled"
    assert body["message"] == "410 Gone\nLink: /ui/integrations/i"


async def test_test_notification_reports_success_and_latency(
    loopback: Settings, receiver: RunningSandbox, control: httpx.AsyncClient
) -> None:
    path = f"apprise-{uuid.uuid4().hex[:8]}"
    report = await apprise_provider(loopback).call(
        "test_notification", {"url": json_url(receiver, path)}, {}
    )
    assert report["ok"] is True
    assert report["service"] == "JSON (sandbox)"
    assert report["latency_ms"] >= 0
    [body] = await received(control, path)
    assert body["title"] == apprise_module.TEST_TITLE
    failing = f"apprise-{uuid.uuid4().hex[:8]}"
    await control.put(f"/receiver/_control/{failing}", json={"status": 500})
    report = await apprise_provider(loopback).call(
        "test_notification", {"url": json_url(receiver, failing)}, {}
    )
    assert (report["ok"], report["outcome"]) == (False, "retry")
    with pytest.raises(InvalidInput):
        await apprise_provider(loopback).call("test_notification", {"url": "json://x/y"}, {})


def test_apprise_debug_logs_are_dropped_and_tokens_redacted() -> None:
    import logging

    log_filter = apprise_module.AppriseLogFilter()
    debug = logging.LogRecord("apprise", logging.DEBUG, __file__, 1, "POST %s", ("u",), None)
    assert log_filter.filter(debug) is False
    with apprise_module.redacting(SLACK_URL):
        warning = logging.LogRecord(
            "apprise", logging.WARNING, __file__, 1, "bad token %s", ("testtokentesttokentest00",),
            None,
        )  # fmt: skip
        assert log_filter.filter(warning) is True
    assert warning.getMessage() == "bad token [redacted]"
    assert "testtokentesttokentest00" in secret_parts(SLACK_URL)


def test_the_filter_sits_on_apprise_and_urllib3_loggers() -> None:
    import logging

    apprise_module._install_log_filter()
    for name in ("apprise", "urllib3.connectionpool"):  # urllib3 logs the request path at DEBUG
        filters = logging.getLogger(name).filters
        assert [type(f) for f in filters].count(apprise_module.AppriseLogFilter) == 1, name


# -- the delivery worker --------------------------------------------------------------------------


def make_worker(db: Database, settings: Settings, credentials: Credentials) -> DeliveryWorker:
    return DeliveryWorker(db, credentials, settings=settings, clock=FakeClock(),
                          rng=random.Random(3))  # fmt: skip


async def enqueue_alert(worker: DeliveryWorker, integration: str, reason: str) -> str:
    queued = await worker.outbox.enqueue(
        organization_id=ORG,
        integration_id=integration,
        identifier="apprise",
        event_type="alert.pipeline_failed",
        data={"kind": "pipeline_failed", "reason": reason, "link": "/ui/pipelines"},
        idempotency_key=f"alert-{uuid.uuid4().hex}",
    )
    return queued.id


async def test_the_worker_delivers_apprise_entries_and_retries_failures(
    db: Database, loopback: Settings, receiver: RunningSandbox, control: httpx.AsyncClient
) -> None:
    path = f"apprise-{uuid.uuid4().hex[:8]}"
    credentials = Credentials()
    credentials.by_integration["int-apprise"] = {"url": json_url(receiver, path)}
    worker = make_worker(db, loopback, credentials)
    try:
        await control.put(f"/receiver/_control/{path}", json={"status": 503, "times": 1})
        delivery_id = await enqueue_alert(worker, "int-apprise", "run 7 failed")

        assert await worker.drain() == 1
        [entry] = await delivery_log(db, ORG, "int-apprise")
        assert (entry.status, entry.attempts) == (DeliveryStatus.PENDING, 1)
        assert "did not accept the notification" in (entry.last_error or "")
        assert await worker.drain() == 0  # not due yet: the backoff holds

        clock = worker.clock
        assert isinstance(clock, FakeClock)
        clock.advance(60)
        assert await worker.drain() == 1
        [entry] = await delivery_log(db, ORG, "int-apprise")
        assert (entry.id, entry.status, entry.attempts) == (
            delivery_id, DeliveryStatus.DELIVERED, 2,
        )  # fmt: skip
        bodies = await received(control, path)
        assert len(bodies) == 2  # the refused attempt and the accepted one
        assert bodies[-1]["message"] == "run 7 failed\nLink: /ui/pipelines"
    finally:
        await worker.aclose()


async def test_the_worker_fails_a_refused_apprise_url_at_once(
    db: Database, loopback: Settings, no_sockets: NoSockets
) -> None:
    credentials = Credentials()
    credentials.by_integration["int-bad"] = {"url": "json://collector.example.com/secret0000"}
    worker = make_worker(db, loopback, credentials)
    try:
        await enqueue_alert(worker, "int-bad", "boom")
        assert await worker.drain() == 1
        [entry] = await delivery_log(db, ORG, "int-bad")
        assert (entry.status, entry.attempts) == (DeliveryStatus.FAILED, 1)
        assert "loopback address" in (entry.last_error or "")
        assert "secret0000" not in (entry.last_error or "")
        assert no_sockets.attempts == []
    finally:
        await worker.aclose()


async def test_the_worker_sends_slack_entries_through_apprise(
    db: Database, strict: Settings, slack: FakeSlack
) -> None:
    credentials = Credentials()
    credentials.by_integration["int-slack"] = {"url": SLACK_URL}
    worker = make_worker(db, strict, credentials)
    try:
        slack.status, slack.content = 404, b"no_service"
        await enqueue_alert(worker, "int-slack", "provider down")
        await worker.drain()
        [entry] = await delivery_log(db, ORG, "int-slack")
        assert (entry.status, entry.attempts) == (DeliveryStatus.PENDING, 1)
        slack.status, slack.content = 200, b"ok"
        clock = worker.clock
        assert isinstance(clock, FakeClock)
        clock.advance(60)
        await worker.drain()
        [entry] = await delivery_log(db, ORG, "int-slack")
        assert (entry.status, entry.attempts) == (DeliveryStatus.DELIVERED, 2)
        assert [c["url"] for c in slack.calls] == [SLACK_ENDPOINT, SLACK_ENDPOINT]
    finally:
        await worker.aclose()


async def test_an_alert_reaches_an_apprise_channel_end_to_end(
    db: Database, loopback: Settings, receiver: RunningSandbox, control: httpx.AsyncClient
) -> None:
    path = f"apprise-{uuid.uuid4().hex[:8]}"
    channel = await add_integration(db, None, ORG, identifier="apprise")
    await add_integration(db, None, ORG, identifier="apprise", status=IntegrationStatus.ERROR)
    ids = await Alerts(db).delivery_disabled(ORG, "int-9", "410 Gone from the endpoint")
    assert len(ids) == 1
    async with db.sessions() as session:
        row = await session.get(Delivery, ids[0])
    assert row is not None
    assert (row.integration_id, row.identifier) == (channel, "apprise")

    credentials = Credentials()
    credentials.by_integration[channel] = {"url": json_url(receiver, path)}
    worker = make_worker(db, loopback, credentials)
    clock = worker.clock
    assert isinstance(clock, FakeClock)
    clock.advance(1)  # the alert was queued on the real clock, just after the fake one's start
    try:
        assert await worker.drain() == 1
    finally:
        await worker.aclose()
    [body] = await received(control, path)
    assert body["title"] == "ARKYRA alert: a delivery endpoint was disabled"
    assert body["message"] == "410 Gone from the endpoint\nLink: /ui/integrations/int-9"
