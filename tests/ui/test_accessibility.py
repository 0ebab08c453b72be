"""axe-core (vendored from npm, injected into the page) finds no serious or critical problem on
the dashboard, the open connect dialog, the sign-in page, or the AI and pipelines pages."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.ui.conftest import AXE, LiveDashboard, screenshot, sign_in

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (.venv/bin/pip install playwright)"
)
expect = sync_api.expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BLOCKING = ("serious", "critical")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe on the page as it is now; the serious and critical violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5),
            }));
        }"""
    )
    return [v for v in result if v["impact"] in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['impact']}: {v['id']} ({v['help']}) at {v['nodes']}" for v in violations)


@pytest.fixture
def axe_page(browser: Browser, live: LiveDashboard) -> Page:
    # The app's CSP allows only its own scripts; let the test inject axe-core.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page  # type: ignore[misc]
    context.close()


def test_main_page_has_no_serious_accessibility_violations(
    axe_page: Page, live: LiveDashboard
) -> None:
    page = axe_page
    page.goto(f"{live.url}/ui/sign-in")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    sign_in(page, live)
    page.get_by_role("link", name="Connect HeyGen").click()
    page.locator("dialog#modal").get_by_label("API key").fill("hg_axe_test_key_0123456789")
    page.locator("dialog#modal").get_by_role("button", name="Connect").click()
    page.wait_for_url(f"{live.url}/?connected=heygen")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    screenshot(page, "12-axe-dashboard")

    page.get_by_role("link", name="Connect ElevenLabs").click()
    expect(page.locator("dialog#modal")).to_be_visible()
    page.locator("dialog#modal").get_by_role("button", name="Connect").click()  # browser-invalid
    violations = axe_violations(page)
    assert not violations, describe(violations)


@pytest.mark.parametrize("path", ["/ui/ai", "/ui/pipelines", "/?category=content"])
def test_other_pages_have_no_serious_accessibility_violations(
    axe_page: Page, live: LiveDashboard, path: str
) -> None:
    sign_in(axe_page, live)
    axe_page.goto(f"{live.url}{path}")
    violations = axe_violations(axe_page)
    assert not violations, describe(violations)


def test_an_integration_panel_with_its_activity_has_no_serious_violations(
    axe_page: Page, live: LiveDashboard
) -> None:
    page = axe_page
    sign_in(page, live)
    page.get_by_role("link", name="Connect Webhooks").click()
    dialog = page.locator("dialog#modal")
    dialog.get_by_label("Endpoint URL").fill(f"{live.sandbox.url}/receiver/axe-hook")
    dialog.get_by_role("button", name="Connect").click()
    expect(dialog.get_by_label("Signing secret")).to_be_visible()
    violations = axe_violations(page)  # the secret shown once, in the dialog
    assert not violations, describe(violations)

    dialog.get_by_role("link", name="Done").click()
    page.locator('li.card[data-provider="webhooks"]').get_by_role(
        "link", name=re.compile("^Manage Webhooks")
    ).click()
    expect(page.get_by_role("heading", name="Recent deliveries")).to_be_visible()
    violations = axe_violations(page)
    assert not violations, describe(violations)
