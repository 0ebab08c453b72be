"""Zapier, Make and n8n: each vendor's URL rules (strict outside the sandbox), n8n header auth
and test URLs, the explicit test delivery against the sandbox receiver, and the honest
caveat in every catalogue description."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from arkyra.config import Settings
from arkyra.errors import InvalidInput, UnsafeURL
from arkyra.providers import ThirdPartyProvider, catalogue_entry, get_provider, provider_class
from arkyra.providers.automation._hooks import HookProvider
from arkyra.providers.automation.n8n import TEST_URL_WARNING
from tests.conftest import make_settings
from tests.delivery.conftest import FakeResolver

DNS = {
    "hooks.zapier.com": ["54.86.12.1"],
    "hook.eu1.make.com": ["3.120.0.10"],
    "hook.us2.make.com": ["3.120.0.11"],
    "n8n.example.com": ["93.184.216.34"],
    "sandbox.test": ["93.184.216.34"],
    "n8n.internal-corp.example.com": ["10.2.3.4"],
}
MAKE_TOKEN = "abcdefghij0123456789abcdefghij01"


@pytest.fixture
def strict(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sandbox=False)


def hook(identifier: str, settings: Settings) -> HookProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    provider = get_provider(identifier, settings=settings, client=client)
    assert isinstance(provider, HookProvider)
    provider.resolver = FakeResolver(DNS)
    return provider


@pytest.fixture
def sandboxed(
    provider_factory: Callable[[str], ThirdPartyProvider],
) -> Callable[[str], HookProvider]:
    def make(identifier: str) -> HookProvider:
        provider = provider_factory(identifier)
        assert isinstance(provider, HookProvider)
        provider.resolver = FakeResolver(DNS)
        return provider

    return make


# -- URL rules -------------------------------------------------------------------------------

VALID = [
    ("zapier", "https://hooks.zapier.com/hooks/catch/123456/abCD12/"),
    ("zapier", "https://hooks.zapier.com/hooks/catch/123456/abCD12"),
    ("zapier", "https://hooks.zapier.com/hooks/catch/123456/abCD12/silent/"),
    ("make", f"https://hook.eu1.make.com/{MAKE_TOKEN}"),
    ("make", f"https://hook.us2.make.com/{MAKE_TOKEN}"),
    ("n8n", "https://n8n.example.com/webhook/6f1c1a2e-0000-4000-8000-000000000001"),
    ("n8n", "https://n8n.example.com/n8n/webhook/orders/new"),
    ("n8n", "https://n8n.example.com/webhook-test/orders"),
]

INVALID = [
    ("zapier", "https://hooks.zapier.com/hooks/standard/123/abc/", "/hooks/catch"),
    ("zapier", "https://hooks.zapier.com/hooks/catch/abc/def/", "/hooks/catch"),
    ("zapier", "https://evil.example.com/hooks/catch/1/abc/", "hooks.zapier.com"),
    ("zapier", "https://hooks.zapier.com:8443/hooks/catch/1/abc/", "hooks.zapier.com"),
    ("zapier", "http://hooks.zapier.com/hooks/catch/1/abc/", "https"),
    ("make", f"https://hook.make.com/{MAKE_TOKEN}", "hook.<zone>.make.com"),
    ("make", f"https://hook.eu1.make.com.evil.io/{MAKE_TOKEN}", "hook.<zone>.make.com"),
    ("make", "https://hook.eu1.make.com/a/b", "token"),
    ("make", "https://hook.eu1.make.com/", "token"),
    ("n8n", "https://n8n.example.com/hooks/orders", "/webhook/"),
    ("n8n", "https://n8n.example.com/webhook/", "/webhook/"),
    ("n8n", "http://n8n.example.com/webhook/orders", "https"),
    ("n8n", "not a url", "no host"),
]


@pytest.mark.parametrize(("identifier", "url"), VALID)
async def test_documented_urls_are_accepted_without_sending(
    strict: Settings, identifier: str, url: str
) -> None:
    provider = hook(identifier, strict)
    account = await provider.check_connection({"url": url})
    assert account.id == provider.fingerprint(url)
    labelled = await provider.check_connection({"url": url, "label": "Ops"})
    if "webhook-test" in url:  # the integration list shows that this URL will stop working
        assert account.name == "n8n (test URL, expires)"
        assert labelled.name == "Ops (test URL, expires)"
    else:
        assert account.name == provider.title
        assert labelled.name == "Ops"


@pytest.mark.parametrize(("identifier", "url", "reason"), INVALID)
async def test_malformed_urls_are_field_errors(
    strict: Settings, identifier: str, url: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await hook(identifier, strict).check_connection({"url": url})
    assert reason in caught.value.errors["url"]


@pytest.mark.parametrize(
    ("identifier", "url"),
    [
        ("n8n", "https://n8n.internal-corp.example.com/webhook/orders"),
        ("n8n", "https://10.0.0.3/webhook/orders"),
        ("n8n", "https://[::1]/webhook/orders"),
        ("n8n", "https://169.254.169.254/webhook/orders"),
    ],
)
async def test_hostile_urls_are_refused_at_connect(
    strict: Settings, identifier: str, url: str
) -> None:
    with pytest.raises(UnsafeURL):
        await hook(identifier, strict).check_connection({"url": url})


@pytest.mark.parametrize(
    ("identifier", "url"),
    [
        ("zapier", "http://sandbox.test/receiver/hooks/catch/123/abc/"),
        ("make", f"http://sandbox.test/receiver/make/{MAKE_TOKEN}"),
        ("n8n", "http://sandbox.test/receiver/webhook/orders"),
    ],
)
async def test_sandbox_mode_relaxes_the_host_but_keeps_the_path_rule(
    settings: Settings, strict: Settings, identifier: str, url: str
) -> None:
    assert settings.sandbox
    await hook(identifier, settings).check_connection({"url": url})
    with pytest.raises(InvalidInput):
        await hook(identifier, strict).check_connection({"url": url})
    broken = url.replace("receiver/", "receiver/x/").rsplit("/", 2)[0] + "/?/"
    with pytest.raises(InvalidInput):
        await hook(identifier, settings).check_connection({"url": broken})


# -- n8n specifics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"header_name": "X-Auth"}, "header_value"),
        ({"header_value": "v"}, "header_name"),
        ({"header_name": "Bad Header", "header_value": "v"}, "header_name"),
        ({"header_name": "Content-Type", "header_value": "v"}, "header_name"),
        ({"header_name": "webhook-signature", "header_value": "v"}, "header_name"),
    ],
)
def test_n8n_header_auth_needs_a_valid_pair(fields: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        provider_class("n8n").validate_credentials(
            {"url": "https://n8n.example.com/webhook/x", **fields}
        )
    assert field in caught.value.errors


async def test_n8n_sends_the_auth_header_and_reads_a_401(
    sandboxed: Callable[[str], HookProvider], sandbox_client: httpx.AsyncClient
) -> None:
    provider = sandboxed("n8n")
    creds = provider.validate_credentials(
        {"url": "http://sandbox.test/receiver/webhook/orders", "header_name": "X-N8N-Auth",
         "header_value": "s3cret-value"}
    )  # fmt: skip
    report = await provider.call("test_webhook", creds, {})
    assert report["ok"]
    assert report["status"] == 200
    assert report["warnings"] == []
    log = (await sandbox_client.get("/receiver/_control/webhook/orders")).json()
    assert log["deliveries"][0]["headers"]["x-n8n-auth"] == "s3cret-value"

    await sandbox_client.put("/receiver/_control/webhook/orders", json={"status": 403})
    report = await provider.call("test_webhook", creds, {})
    assert report["status"] == 403
    assert "header auth" in report["warnings"][0]
    assert "s3cret-value" not in str(report)


async def test_n8n_test_urls_are_flagged_and_an_unregistered_one_reads_as_404(
    sandboxed: Callable[[str], HookProvider],
) -> None:
    provider = sandboxed("n8n")
    report = await provider.call(
        "test_webhook", {"url": "http://sandbox.test/receiver/webhook-test/orders"}, {}
    )
    assert not report["ok"]
    assert report["status"] == 404
    assert report["warnings"][0] == TEST_URL_WARNING
    assert "120 s" in TEST_URL_WARNING
    assert "not active" in report["warnings"][1]


# -- test deliveries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "path", "answer"),
    [
        ("zapier", "hooks/catch/123/abc/", '"status":"success"'),
        ("make", f"make/{MAKE_TOKEN}", "Accepted"),
        ("n8n", "webhook/orders", "Workflow was started"),
    ],
)
async def test_the_explicit_test_delivery_reaches_the_hook(
    sandboxed: Callable[[str], HookProvider],
    sandbox_client: httpx.AsyncClient,
    identifier: str,
    path: str,
    answer: str,
) -> None:
    provider = sandboxed(identifier)
    creds = provider.validate_credentials({"url": f"http://sandbox.test/receiver/{path}"})
    report = await provider.call("test_webhook", creds, {})
    assert report["ok"]
    assert report["status"] == 200
    assert "not that a workflow is on" in report["note"]
    log = (await sandbox_client.get(f"/receiver/_control/{path}")).json()
    [received] = log["deliveries"]
    assert received["webhook_id"] == report["webhook_id"]
    assert '"type":"webhook.test"' in received["body"]
    assert received["signature"] is None  # these hooks take no signature
    direct = await sandbox_client.post(f"/receiver/{path}", json={})
    assert answer in direct.text


@pytest.mark.parametrize("identifier", ["zapier", "make", "n8n", "webhooks"])
def test_every_catalogue_entry_says_a_2xx_proves_little(identifier: str) -> None:
    entry = catalogue_entry(provider_class(identifier))
    assert "2xx only proves" in entry["description"]
    assert entry["functions"] == ["test_webhook"]
    assert entry["category"] == "automation"
