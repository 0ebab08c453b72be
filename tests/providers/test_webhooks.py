"""The webhooks provider: generated secret handed out once, URL checks without sending, signed
test deliveries verified by the standardwebhooks library, errors mapped, hostile URLs refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from arkyra.config import Settings
from arkyra.delivery import signing
from arkyra.errors import BadRequest, InvalidInput, RateLimited, Transient, UnsafeURL
from arkyra.providers import ThirdPartyProvider, get_provider
from arkyra.providers.automation._hooks import OutgoingMessage
from arkyra.providers.automation.webhooks import WebhooksProvider
from tests.conftest import make_settings
from tests.delivery.conftest import FakeResolver

SANDBOX_HOOK = "http://sandbox.test/receiver/wh"
PUBLIC_HOOK = "https://hooks.example.com/events/inbox"


class Recorder:
    """A transport that records requests and answers 200 (nothing should reach it, mostly)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)


@pytest.fixture
def strict(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sandbox=False)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def provider(strict: Settings, recorder: Recorder) -> WebhooksProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    hooks = get_provider("webhooks", settings=strict, client=client)
    assert isinstance(hooks, WebhooksProvider)
    hooks.resolver = FakeResolver()
    return hooks


@pytest.fixture
def sandboxed(provider_factory: Callable[[str], ThirdPartyProvider]) -> WebhooksProvider:
    hooks = provider_factory("webhooks")
    assert isinstance(hooks, WebhooksProvider)
    hooks.resolver = FakeResolver()
    return hooks


# -- the secret ------------------------------------------------------------------------------


def test_a_missing_secret_is_generated_and_handed_out_exactly_once(
    provider: WebhooksProvider,
) -> None:
    clean = provider.validate_credentials({"url": PUBLIC_HOOK, "label": "CRM"})
    secret = clean["secret"]
    assert secret.startswith("whsec_")
    assert len(signing.secret_key(secret)) == 32
    assert provider.take_generated_secret() == secret
    assert provider.take_generated_secret() is None  # once


def test_a_given_secret_is_kept_and_nothing_is_handed_out(provider: WebhooksProvider) -> None:
    mine = signing.generate_secret()
    assert provider.validate_credentials({"url": PUBLIC_HOOK, "secret": mine})["secret"] == mine
    assert provider.take_generated_secret() is None


def test_validation_on_the_class_also_generates_but_keeps_no_copy() -> None:
    clean = WebhooksProvider.validate_credentials({"url": PUBLIC_HOOK})
    assert clean["secret"].startswith("whsec_")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": PUBLIC_HOOK, "secret": "hunter2-not-a-whsec"}, "secret"),
        ({"secret": signing.generate_secret()}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": PUBLIC_HOOK, "api_key": "x"}, "api_key"),
    ],
)
def test_bad_credentials_are_field_errors(fields: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        WebhooksProvider.validate_credentials(fields)
    assert field in caught.value.errors
    assert "hunter2" not in str(caught.value) + str(caught.value.errors)


# -- check_connection ------------------------------------------------------------------------


async def test_check_connection_validates_without_sending(
    provider: WebhooksProvider, recorder: Recorder
) -> None:
    creds = provider.validate_credentials({"url": PUBLIC_HOOK})
    account = await provider.check_connection(creds)
    assert account.name == "hooks.example.com"
    assert account.id == provider.fingerprint(PUBLIC_HOOK)
    assert account.id.startswith("fp_")
    assert "events" not in account.id
    assert creds["secret"] not in account.id
    labelled = await provider.check_connection({**creds, "label": "CRM"})
    assert labelled.name == "CRM"
    assert labelled.id == account.id
    assert recorder.requests == []


async def test_strict_mode_wants_https(provider: WebhooksProvider) -> None:
    with pytest.raises(InvalidInput) as caught:
        await provider.check_connection({"url": "http://hooks.example.com/x", "secret": ""})
    assert "https" in caught.value.errors["url"]


HOSTILE_URLS = [
    "https://127.0.0.1/tok3n",
    "https://localhost/tok3n",
    "https://[::1]/tok3n",
    "https://10.0.0.8/tok3n",
    "https://172.16.4.4/tok3n",
    "https://192.168.0.1/tok3n",
    "https://169.254.169.254/latest/meta-data/iam",
    "https://[fd00:ec2::254]/latest",
    "https://100.100.100.200/latest",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://2130706433/tok3n",
    "https://0x7f.1/tok3n",
    "https://[::ffff:127.0.0.1]/tok3n",
    "https://printer.local/tok3n",
    "https://internal.example.com/tok3n",
    "https://meta.example.com/tok3n",
    "https://loop.example.com/tok3n",
    "https://mapped.example.com/tok3n",
    "https://half.example.com/tok3n",
    "https://user:pass@hooks.example.com/tok3n",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_hostile_urls_are_refused_at_connect(
    provider: WebhooksProvider, recorder: Recorder, url: str
) -> None:
    creds = {"url": url, "secret": signing.generate_secret()}
    with pytest.raises(UnsafeURL) as caught:
        await provider.check_connection(creds)
    assert "tok3n" not in str(caught.value)
    assert "meta-data" not in str(caught.value)
    with pytest.raises(UnsafeURL):
        await provider.call("test_webhook", creds, {})
    assert recorder.requests == []


# -- deliveries ------------------------------------------------------------------------------


def test_prepared_requests_carry_one_signature_per_active_secret(
    provider: WebhooksProvider,
) -> None:
    new, old = signing.generate_secret(), signing.generate_secret()
    creds = {"url": PUBLIC_HOOK, "secret": f"{new} {old}"}
    message = OutgoingMessage("msg_abc", "video.rendered", b'{"type":"video.rendered"}')
    prepared = provider.prepare_delivery(creds, message, 1_700_000_000)
    assert prepared.headers["webhook-id"] == "msg_abc"
    assert prepared.headers["webhook-timestamp"] == "1700000000"
    signatures = prepared.headers["webhook-signature"].split(" ")
    assert [s.split(",")[0] for s in signatures] == ["v1", "v1"]
    assert prepared.body == message.body
    assert PUBLIC_HOOK not in repr(prepared)


async def test_test_webhook_sends_a_signed_test_event_to_the_sandbox(
    sandboxed: WebhooksProvider, sandbox_client: httpx.AsyncClient
) -> None:
    creds = sandboxed.validate_credentials({"url": SANDBOX_HOOK})
    secret = sandboxed.take_generated_secret()
    assert secret is not None
    await sandbox_client.put("/receiver/_control/wh", json={"secret": secret})

    report = await sandboxed.call("test_webhook", creds, {})

    assert report["ok"]
    assert report["status"] == 200
    assert report["latency_ms"] >= 0
    assert "not that a workflow" in report["note"]
    log = (await sandbox_client.get("/receiver/_control/wh")).json()
    [received] = log["deliveries"]
    assert received["verified"] is True
    assert received["webhook_id"] == report["webhook_id"]
    payload = Webhook(secret).verify(received["body"], received["headers"])
    assert payload["type"] == "webhook.test"


async def test_the_receiver_refuses_a_wrong_signature(
    sandboxed: WebhooksProvider, sandbox_client: httpx.AsyncClient
) -> None:
    await sandbox_client.put("/receiver/_control/wh", json={"secret": signing.generate_secret()})
    creds = sandboxed.validate_credentials({"url": SANDBOX_HOOK})
    report = await sandboxed.call("test_webhook", creds, {})
    assert not report["ok"]
    assert report["status"] == 401


@pytest.mark.parametrize(
    ("behaviour", "error", "code"),
    [
        ({"status": 410, "body": "gone"}, BadRequest, "gone"),
        ({"status": 429, "retry_after": 7}, RateLimited, None),
        ({"status": 503}, Transient, None),
        ({"status": 302, "location": "http://10.0.0.1/"}, BadRequest, None),
        ({"status": 400, "body": "bad payload"}, BadRequest, None),
    ],
)
async def test_send_data_maps_failed_attempts(
    sandboxed: WebhooksProvider,
    sandbox_client: httpx.AsyncClient,
    behaviour: dict[str, Any],
    error: type[Exception],
    code: str | None,
) -> None:
    await sandbox_client.put("/receiver/_control/wh", json=behaviour)
    creds = sandboxed.validate_credentials({"url": SANDBOX_HOOK})
    with pytest.raises(error) as caught:
        await sandboxed.send_data(creds, {"type": "video.rendered", "data": {"id": 1}})
    if code:
        assert caught.value.code == code  # type: ignore[attr-defined]
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7
    assert creds["secret"] not in str(caught.value)


async def test_send_data_delivers_once_with_the_given_id(
    sandboxed: WebhooksProvider, sandbox_client: httpx.AsyncClient
) -> None:
    creds = sandboxed.validate_credentials({"url": SANDBOX_HOOK})
    result = await sandboxed.send_data(
        creds, {"type": "video.rendered", "data": {"id": 1}, "id": "msg_fixed"}
    )
    assert result["ok"]
    assert result["webhook_id"] == "msg_fixed"
    log = (await sandbox_client.get("/receiver/_control/wh")).json()
    assert log["accepted_ids"] == ["msg_fixed"]


# -- with the credential store ---------------------------------------------------------------


class MemoryMirror:
    """Stands in for the Prefect block mirror."""

    def __init__(self) -> None:
        self.blocks: dict[str, Any] = {}

    async def save(self, name: str, block: Any) -> str:
        self.blocks[name] = block
        return str(uuid.uuid4())

    async def delete(self, name: str, identifier: str) -> bool:
        return self.blocks.pop(name, None) is not None

    async def list_blocks(self) -> list[Any]:
        return []


async def test_connect_stores_the_generated_secret_and_hands_it_out_once(
    db: Any, db_settings: Settings
) -> None:
    """The flow the API uses: connect, then read the generated secret back exactly once."""
    from arkyra.credentials.store import CredentialStore
    from arkyra.security.vault import Vault

    made: list[WebhooksProvider] = []

    def factory(identifier: str) -> ThirdPartyProvider:
        provider = get_provider(identifier, settings=db_settings)
        assert isinstance(provider, WebhooksProvider)
        provider.resolver = FakeResolver()
        made.append(provider)
        return provider

    store = CredentialStore(
        db, Vault.from_settings(db_settings), MemoryMirror(), settings=db_settings,
        provider_factory=factory,
    )  # fmt: skip
    integration = await store.connect("org_wh", "webhooks", {"url": PUBLIC_HOOK})
    secret = made[0].take_generated_secret()
    assert secret is not None
    assert made[0].take_generated_secret() is None
    assert integration.name == "hooks.example.com"
    _, stored = await store.credentials_for_use("org_wh", integration.id)
    assert stored["secret"] == secret
    assert secret not in str(integration.to_dict())
