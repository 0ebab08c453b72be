"""Looker Studio: report ids and embed URLs, the check with and without domain-wide delegation,
asset search paging, errors, and the sandbox."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from arkyra.errors import InvalidCredentials, InvalidInput, Transient
from arkyra.providers import ThirdPartyProvider, catalogue_entry, provider_class
from arkyra.providers.content.google_auth import DATASTUDIO_READONLY, DRIVE_METADATA_READONLY
from arkyra.providers.content.looker_studio import LookerStudioProvider, parse_report
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import looker_studio as sandbox_looker
from tests.providers.google_fixtures import (
    TOKEN_URL,
    google_error,
    google_provider_fixtures,
    register_service_account,
    service_account_fixtures,
    token_claims,
    token_route,
)

REAL = "https://datastudio.googleapis.com"
EMAIL = "looker@arkyra-test.iam.gserviceaccount.com"
USER = "ana@acme.test"
REPORT = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"

rsa_key, key_json, creds = service_account_fixtures(
    EMAIL,
    "kid-looker",
    {"report_id": f"https://lookerstudio.google.com/reporting/{REPORT}/page/p_intro, abc123XYZ"},
)
fresh_token_cache, real = google_provider_fixtures("looker-studio", LookerStudioProvider)


def test_registration_says_where_the_data_comes_from() -> None:
    cls = provider_class("looker-studio")
    entry = catalogue_entry(cls)
    assert entry["category"] == "content"
    assert "no data API" in entry["description"]
    assert "GA4" in entry["description"]
    assert "Google Sheets" in entry["description"]
    fields = {f["name"]: f for f in entry["fields"]}
    assert fields["service_account_json"]["kind"] == "json"
    assert (fields["report_id"]["kind"], fields["report_id"]["required"]) == ("text", False)
    assert {"embed_url", "reports", "list_assets"} <= set(entry["functions"])


@pytest.mark.parametrize(
    ("text", "report", "page"),
    [
        (REPORT, REPORT, None),
        (f"https://lookerstudio.google.com/reporting/{REPORT}/page/p_x1", REPORT, "p_x1"),
        (f"https://datastudio.google.com/u/0/reporting/{REPORT}", REPORT, None),
        (f"https://lookerstudio.google.com/embed/reporting/{REPORT}/page/abc", REPORT, "abc"),
    ],
)
def test_parse_report(text: str, report: str, page: str | None) -> None:
    ref = parse_report(text)
    assert (ref.report_id, ref.page_id) == (report, page)


def test_parse_report_rejects_other_text() -> None:
    with pytest.raises(InvalidInput):
        parse_report("https://example.com/not/a/report")


async def test_embed_urls_without_any_api_call(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    with respx.mock() as mock:  # any request would fail the test
        urls = await real.call("embed_url", creds, {})
        other = await real.call("embed_url", creds, {"report_id": "abc123XYZ", "page_id": "p_2"})
        listed = await real.call("reports", creds, {})
        assert not mock.calls
    assert urls == {
        "report_id": REPORT,
        "page_id": "p_intro",
        "embed_url": f"https://lookerstudio.google.com/embed/reporting/{REPORT}/page/p_intro",
        "report_url": f"https://lookerstudio.google.com/reporting/{REPORT}/page/p_intro",
    }
    assert other["embed_url"].endswith("/embed/reporting/abc123XYZ/page/p_2")
    assert [r["report_id"] for r in listed] == [REPORT, "abc123XYZ"]


async def test_send_data_items_point_at_ga4_and_sheets(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    items = await real.send_data(creds, None)
    assert [i.id for i in items] == [REPORT, "abc123XYZ"]
    assert "GA4 or Google Sheets" in items[0].body
    assert items[0].fields["embed_url"].startswith("https://lookerstudio.google.com/embed/")
    assert items[0].source_url == f"https://lookerstudio.google.com/reporting/{REPORT}/page/p_intro"
    with pytest.raises(InvalidInput):
        await real.send_data({"service_account_json": creds["service_account_json"]}, None)


async def test_check_without_delegation_is_a_token_exchange(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    with respx.mock() as mock:
        route = token_route(mock, "t")
        account = await real.check_connection(creds)
        assert len(mock.calls) == 1  # the exchange alone, no API call
    claims = token_claims(route)
    assert claims["scope"] == DRIVE_METADATA_READONLY
    assert "sub" not in claims
    assert (account.id, account.name) == (EMAIL, "arkyra-test")


async def test_check_with_delegation_searches_one_asset_as_the_user(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    with respx.mock() as mock:
        token = token_route(mock, "t")
        search = mock.get(f"{REAL}/v1/assets:search").respond(200, json={"assets": []})
        account = await real.check_connection({**creds, "delegated_user": USER})
    claims = token_claims(token)
    assert (claims["scope"], claims["sub"]) == (DATASTUDIO_READONLY, USER)
    assert dict(search.calls.last.request.url.params) == {"assetTypes": "REPORT", "pageSize": "1"}
    assert search.calls.last.request.headers["Authorization"] == "Bearer t"
    assert (account.id, account.name) == (EMAIL, f"{USER} (arkyra-test)")


async def test_delegation_refused_and_permission_errors(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    delegated = {**creds, "delegated_user": USER}
    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(
            401, json={"error": "unauthorized_client", "error_description": "not authorized"}
        )
        with pytest.raises(InvalidCredentials, match="not authorized"):
            await real.check_connection(delegated)
    with respx.mock() as mock:
        token_route(mock, "t")
        denied = google_error(403, "PERMISSION_DENIED", "Forbidden")
        route = mock.get(f"{REAL}/v1/assets:search").respond(403, json=denied)
        with pytest.raises(InvalidCredentials, match=f"domain-wide delegation for {EMAIL}"):
            await real.call("list_assets", delegated, {})
        route.respond(503, json=google_error(503, "UNAVAILABLE", "x"))
        with pytest.raises(Transient):
            await real.call("list_assets", delegated, {})


async def test_list_assets_needs_delegation(
    real: LookerStudioProvider, creds: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput) as info:
        await real.call("list_assets", creds, {})
    assert "delegated_user" in info.value.errors


# -- end to end against the sandbox ------------------------------------------------------------


@pytest.fixture
def sandbox(
    provider_factory: Callable[[str], ThirdPartyProvider],
    sandbox_state: SandboxState,
    rsa_key: rsa.RSAPrivateKey,
    key_json: dict[str, str],
) -> LookerStudioProvider:
    register_service_account(sandbox_state, rsa_key, key_json, domain_wide_delegation=True)
    sandbox_looker.seed_assets(sandbox_state, owner=USER, reports=5, data_sources=2)
    sandbox_looker.seed_assets(sandbox_state, owner="bob@acme.test", reports=2, data_sources=0)
    provider = provider_factory("looker-studio")
    assert isinstance(provider, LookerStudioProvider)
    return provider


async def test_sandbox_lists_assets_across_pages(
    sandbox: LookerStudioProvider, sandbox_state: SandboxState, creds: dict[str, str]
) -> None:
    delegated = {**creds, "delegated_user": USER}
    account = await sandbox.check_connection(delegated)
    assert account.id == EMAIL
    reports = await sandbox.call("list_assets", delegated, {"page_size": 2})
    assert len(reports) == 5  # bob's reports are not visible to ana
    assert {a["assetType"] for a in reports} == {"REPORT"}
    assert all(a["owner"] == USER for a in reports)
    assert not any(k.startswith("_") for a in reports for k in a)
    pages = sandbox_state.calls["looker-studio GET /looker-studio/v1/assets:search"]
    assert pages == 1 + 3  # the check, then three pages of two
    sources = await sandbox.call(
        "list_assets", delegated, {"asset_type": "DATA_SOURCE", "max_items": 1}
    )
    assert len(sources) == 1
    sandbox_state.calls.clear()
    first = await sandbox.call("list_assets", delegated, {"page_size": 2, "max_items": 3})
    assert [a["name"] for a in first] == [a["name"] for a in reports[:3]]
    search = "looker-studio GET /looker-studio/v1/assets:search"
    assert sandbox_state.calls[search] == 2  # the third page is never asked for


async def test_sandbox_refuses_accounts_without_delegation(
    sandbox: LookerStudioProvider, sandbox_state: SandboxState, creds: dict[str, str]
) -> None:
    sandbox_state.store("google-oauth")["service_accounts"][EMAIL]["domain_wide_delegation"] = False
    with pytest.raises(InvalidCredentials, match="unauthorized"):
        await sandbox.check_connection({**creds, "delegated_user": USER})
    account = await sandbox.check_connection(creds)  # no delegation asked: the key is still fine
    assert account.id == EMAIL
