"""The dashboard in Chromium: sign in, connect HeyGen against the sandbox (a bad key, then a good
one), browse its voices, filter by category, disconnect; keyboard-only use and phone width."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session as SqlSession

from arkyra.db.models import AIUsage
from tests.ui.conftest import LiveDashboard, screenshot, sign_in

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (.venv/bin/pip install playwright)"
)
expect = sync_api.expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

GOOD_KEY = "hg_browser_test_key_0123456789abcdef"
BAD_KEY = "not_a_heygen_key_0123456789"


def card(page: Page, identifier: str) -> Locator:
    return page.locator(f'li.card[data-provider="{identifier}"]')


def test_connect_browse_and_disconnect_heygen(page: Page, live: LiveDashboard) -> None:
    sign_in(page, live)
    heygen = card(page, "heygen")
    expect(heygen).to_contain_text("Not connected")
    screenshot(page, "01-dashboard")

    page.get_by_role("link", name="Connect HeyGen").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="Connect HeyGen")).to_be_visible()
    api_key = dialog.get_by_label("API key")
    expect(api_key).to_have_attribute("type", "password")

    api_key.fill(BAD_KEY)
    dialog.get_by_role("button", name="Connect").click()
    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("HeyGen refused the connection")
    expect(alert).to_contain_text("Invalid credentials")
    expect(dialog.get_by_label("API key")).to_have_value("")  # never shown again
    assert BAD_KEY not in page.content()
    screenshot(page, "02-connect-refused")

    dialog.get_by_label("API key").fill(GOOD_KEY)
    dialog.get_by_role("button", name="Connect").click()
    page.wait_for_url(re.compile(r"/\?connected=heygen$"))
    expect(page.locator("#notice")).to_contain_text("HeyGen is connected as Sandbox Creator")
    expect(heygen).to_contain_text("Connected as Sandbox Creator")
    assert GOOD_KEY not in page.content()
    screenshot(page, "03-connected")

    heygen.get_by_role("link", name=re.compile("^Manage HeyGen")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("HeyGen: Sandbox Creator")
    page.get_by_role("link", name="Voices").click()
    rows = page.locator("#results tbody tr")
    expect(rows.first).to_be_visible()
    total = rows.count()
    assert total >= 2
    first_name = rows.first.locator("td").nth(1).inner_text()
    page.get_by_label("Search voices").fill(first_name)
    visible = page.locator("#results tbody tr:not([hidden])")
    expect(visible.first).to_contain_text(first_name)
    assert 1 <= visible.count() < total
    expect(page.locator("#results-count")).to_contain_text(f"of {total} shown")
    screenshot(page, "04-browse-voices")

    page.get_by_role("link", name="Disconnect").click()
    expect(dialog.get_by_role("heading", name="Disconnect HeyGen?")).to_be_visible()
    screenshot(page, "05-confirm-disconnect")
    dialog.get_by_role("link", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_contain_text("HeyGen")  # nothing removed

    page.get_by_role("link", name="Disconnect").click()
    dialog.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(re.compile(r"/\?disconnected=heygen$"))
    expect(page.locator("#notice")).to_contain_text("HeyGen was disconnected.")
    expect(card(page, "heygen")).to_contain_text("Not connected")
    screenshot(page, "06-disconnected")


def test_a_generated_webhook_secret_is_shown_once_then_the_panel_lists_deliveries(
    page: Page, live: LiveDashboard
) -> None:
    sign_in(page, live)
    page.get_by_role("link", name="Connect Webhooks").click()
    dialog = page.locator("dialog#modal")
    dialog.get_by_label("Endpoint URL").fill(f"{live.sandbox.url}/receiver/browser-hook")
    dialog.get_by_role("button", name="Connect").click()
    secret_field = dialog.get_by_label("Signing secret")
    expect(secret_field).to_be_visible()
    expect(secret_field).to_be_focused()  # ready to copy
    secret = secret_field.input_value()
    assert secret.startswith("whsec_")
    expect(dialog).to_contain_text("shown only this once")
    screenshot(page, "07-webhook-secret-once")

    dialog.get_by_role("link", name="Done").click()
    page.wait_for_url(re.compile(r"/\?connected=webhooks$"))
    assert secret not in page.content()
    card(page, "webhooks").get_by_role("link", name=re.compile("^Manage Webhooks")).click()
    expect(page.get_by_role("heading", name="Recent deliveries")).to_be_visible()
    expect(page.get_by_role("heading", name="Recent jobs")).to_be_visible()
    assert secret not in page.content()
    screenshot(page, "08-webhook-panel")


def test_required_fields_are_checked_in_the_browser(page: Page, live: LiveDashboard) -> None:
    sign_in(page, live)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.get_by_role("link", name="Connect HeyGen").click()
    dialog = page.locator("dialog#modal")
    dialog.get_by_role("button", name="Connect").click()
    assert dialog.get_by_label("API key").evaluate("el => el.validity.valueMissing")
    expect(dialog).to_be_visible()
    assert posts == []  # the browser refused to send it


def test_category_filters_with_counts(page: Page, live: LiveDashboard) -> None:
    sign_in(page, live)
    all_cards = page.locator("li.card").count()
    filters = page.get_by_role("navigation", name="Categories")
    audio = filters.get_by_role("link", name=re.compile(r"^Audio \d+$"))
    count = int(audio.inner_text().split()[-1])
    audio.click()
    page.wait_for_url(re.compile(r"category=audio"))
    expect(audio).to_have_attribute("aria-current", "page")
    cards = page.locator("li.card")
    expect(cards).to_have_count(count)
    assert {cards.nth(i).get_attribute("data-category") for i in range(count)} == {"audio"}
    assert count < all_cards
    screenshot(page, "07-filter-audio")
    filters.get_by_role("link", name=re.compile(r"^All \d+$")).click()
    expect(page.locator("li.card")).to_have_count(all_cards)


def test_modal_is_usable_with_the_keyboard_alone(page: Page, live: LiveDashboard) -> None:
    sign_in(page, live)
    opener = page.get_by_role("link", name="Connect HeyGen")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    inside = "() => document.getElementById('modal').contains(document.activeElement)"
    assert page.evaluate(inside)
    for _ in range(12):  # more stops than the dialog has: focus must wrap, not escape
        page.keyboard.press("Tab")
        assert page.evaluate(inside)
    for _ in range(12):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("() => document.activeElement.textContent.trim()").startswith("Connect")
    outline = opener.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # the focus ring shows where we are


def test_readable_at_phone_width(browser: Browser, live: LiveDashboard) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, live)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        first, second = page.locator("li.card").nth(0), page.locator("li.card").nth(1)
        assert first.bounding_box()["x"] == second.bounding_box()["x"]  # one column
        screenshot(page, "08-phone", full_page=False)
        page.get_by_role("link", name="Connect HeyGen").click()
        expect(page.locator("dialog#modal")).to_be_visible()
        box = page.locator("dialog#modal").bounding_box()
        assert box is not None
        assert box["width"] <= 375
        screenshot(page, "09-phone-connect", full_page=False)
    finally:
        context.close()


def add_usage(live: LiveDashboard, org: str) -> None:
    """Two days of AI usage for ``org``, written straight into the app's database."""
    engine = create_engine(live.settings.effective_database_url)
    now = datetime.now(UTC)
    with SqlSession(engine) as session, session.begin():
        for days_ago, provider, cost in [(0, "glm", "0.02"), (0, "openai", "0.05"),
                                         (1, "openai", "0.03")]:  # fmt: skip
            session.add(
                AIUsage(
                    request_id=uuid.uuid4().hex,
                    attempt_no=1,
                    organization_id=org,
                    provider=provider,
                    model="m",
                    cost_usd=Decimal(cost),
                    created_at=now - timedelta(days=days_ago),
                )
            )
    engine.dispose()


def test_ai_page_charts_cost_per_provider_per_day(page: Page, live: LiveDashboard) -> None:
    add_usage(live, "org-ui")
    sign_in(page, live)
    page.get_by_role("link", name="AI", exact=True).click()
    expect(page.get_by_role("heading", name="AI router")).to_be_visible()
    chart = page.get_by_role("img", name="Cost in US dollars per provider per day")
    expect(chart).to_be_visible()
    expect(chart.locator("rect")).to_have_count(3)
    expect(page.locator("#cost-table tbody tr")).to_have_count(2)
    screenshot(page, "10-ai")


def test_run_now_starts_a_prefect_run(page: Page, live: LiveDashboard) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(f"ui-test-{uuid.uuid4().hex[:8]}")
        deployment_id = client.create_deployment(flow_id=flow_id, name="browser-nightly")
    try:
        sign_in(page, live)
        page.get_by_role("link", name="Pipelines").click()
        expect(page.get_by_role("heading", name="Pipelines", level=1)).to_be_visible()
        page.get_by_role("button", name=re.compile(r"^Run now .*browser-nightly$")).click()
        notice = page.locator("#notice")
        expect(notice).to_contain_text("Run started")
        link = notice.get_by_role("link")
        href = link.get_attribute("href") or ""
        assert re.search(r"/runs/flow-run/[0-9a-f-]{36}$", href)
        assert "/api/" not in href
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(uuid.UUID(href.rsplit("/", 1)[1]))
        assert run.deployment_id == deployment_id
        screenshot(page, "11-pipelines")
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


def test_signing_out(page: Page, live: LiveDashboard) -> None:
    sign_in(page, live)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in"))
    page.goto(f"{live.url}/ui/ai")
    page.wait_for_url(re.compile(r"/ui/sign-in\?next=/ui/ai"))


def test_everything_works_without_javascript(browser: Browser, live: LiveDashboard) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live)
        page.get_by_role("link", name="Connect HeyGen").click()
        page.wait_for_url(re.compile(r"/ui/providers/heygen/connect$"))
        page.get_by_label("API key").fill(GOOD_KEY)
        page.get_by_role("button", name="Connect").click()
        page.wait_for_url(re.compile(r"/\?connected=heygen$"))
        expect(card(page, "heygen")).to_contain_text("Connected as Sandbox Creator")
        card(page, "heygen").get_by_role("link", name=re.compile("^Manage HeyGen")).click()
        page.get_by_role("link", name="Disconnect").click()
        page.wait_for_url(re.compile(r"/disconnect$"))
        page.get_by_role("button", name="Disconnect").click()
        page.wait_for_url(re.compile(r"/\?disconnected=heygen$"))
        expect(card(page, "heygen")).to_contain_text("Not connected")
    finally:
        context.close()
