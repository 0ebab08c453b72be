"""The dashboard, server side: sessions, CSRF, pages, connect/disconnect, browse, AI, pipelines.

Runs the real app over ASGI with the sandboxed vendors and real Prefect blocks (see
``tests/api/conftest.py``); the browser tests in ``tests/ui`` cover the same flows in Chromium.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from arkyra.api.routes import dashboard
from arkyra.api.session import SESSION_COOKIE, SIGN_IN_CSRF_COOKIE
from arkyra.config import Settings
from arkyra.credentials import CredentialStore
from arkyra.db.models import AIUsage, IntegrationStatus
from arkyra.db.session import Database
from arkyra.providers import all_providers
from arkyra.sandbox.state import SandboxState
from arkyra.security.tokens import mint_token
from tests.api.conftest import API_URL, HEYGEN_KEY

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FRAGMENT = {"X-Arkyra-Fragment": "1"}


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def sign_in(
    api: httpx.AsyncClient, settings: Settings, org: str = "org-a", role: str = "admin"
) -> str:
    """Sign in through the form; return the session's CSRF token (from the dashboard page)."""
    page = await api.get("/ui/sign-in")
    token = mint_token(settings, organization_id=org, role=role)
    response = await api.post(
        "/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": token, "next": "/"}
    )
    assert response.status_code == 303, response.text
    home = await api.get("/")
    assert home.status_code == 200
    return csrf_of(home.text)


async def connect_form(
    api: httpx.AsyncClient, csrf: str, key: str, identifier: str = "heygen", **extra: str
) -> httpx.Response:
    data = {"csrf_token": csrf, "api_key": key, **extra}
    return await api.post(f"/ui/providers/{identifier}/connect", data=data)


async def integration_id_of(api: httpx.AsyncClient, identifier: str = "heygen") -> str:
    page = (await api.get("/")).text
    card = page.split(f'data-provider="{identifier}"', 1)[1].split("</li>\n  \n", 1)[0]
    match = re.search(r'href="/ui/integrations/([0-9a-f-]{36})"', card)
    assert match, "no Manage link on the card"
    return match.group(1)


# -- sign-in, session cookie, CSRF ------------------------------------------------------------


async def test_pages_send_a_stranger_to_sign_in(api: httpx.AsyncClient) -> None:
    response = await api.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in"
    deep = await api.get("/ui/ai")
    assert deep.headers["location"] == "/ui/sign-in?next=/ui/ai"


async def test_sign_in_sets_a_strict_http_only_cookie(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    page = await api.get("/ui/sign-in")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    token = mint_token(db_settings, organization_id="org-a", role="admin")
    response = await api.post(
        "/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": token, "next": "/ui/ai"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/ai"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/" in lowered
    assert "secure" not in lowered  # plain http for local use; https gets Secure
    home = await api.get("/")
    assert "org-a" in home.text
    assert token not in home.text  # the page never carries the token itself


async def test_a_bad_token_is_refused_with_a_reason(api: httpx.AsyncClient) -> None:
    page = await api.get("/ui/sign-in")
    response = await api.post(
        "/ui/sign-in", data={"csrf_token": csrf_of(page.text), "token": "not-a-jwt"}
    )
    assert response.status_code == 401
    assert "That token was refused" in response.text
    assert SESSION_COOKIE not in api.cookies


async def test_sign_in_needs_its_double_submit_token(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await api.get("/ui/sign-in")
    token = mint_token(db_settings, organization_id="org-a", role="admin")
    forged = await api.post("/ui/sign-in", data={"csrf_token": "x" * 43, "token": token})
    assert forged.status_code == 403
    api.cookies.delete(SIGN_IN_CSRF_COOKIE)
    missing = await api.post("/ui/sign-in", data={"csrf_token": "", "token": token})
    assert missing.status_code == 403
    assert SESSION_COOKIE not in api.cookies


async def test_next_never_leaves_the_site(api: httpx.AsyncClient, db_settings: Settings) -> None:
    page = await api.get("/ui/sign-in")
    token = mint_token(db_settings, organization_id="org-a", role="admin")
    response = await api.post(
        "/ui/sign-in",
        data={"csrf_token": csrf_of(page.text), "token": token, "next": "//evil.example/x"},
    )
    assert response.headers["location"] == "/"


async def test_forms_without_the_session_csrf_token_are_refused(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await sign_in(api, db_settings)
    missing = await connect_form(api, "", HEYGEN_KEY)
    assert missing.status_code == 403
    wrong = await connect_form(api, "A" * 43, HEYGEN_KEY)
    assert wrong.status_code == 403
    assert "Not connected" in (await api.get("/")).text


async def test_forms_from_another_origin_are_refused(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await api.post(
        "/ui/providers/heygen/connect",
        data={"csrf_token": csrf, "api_key": HEYGEN_KEY},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403
    same = await api.post(
        "/ui/providers/heygen/connect",
        data={"csrf_token": csrf, "api_key": HEYGEN_KEY},
        headers={"Origin": API_URL},
    )
    assert same.status_code == 303


async def test_only_url_encoded_forms_are_read(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await api.post(
        "/ui/providers/heygen/connect", json={"csrf_token": csrf, "api_key": HEYGEN_KEY}
    )
    assert response.status_code == 400


async def test_sign_out_ends_the_session(api: httpx.AsyncClient, db_settings: Settings) -> None:
    csrf = await sign_in(api, db_settings)
    response = await api.post("/ui/sign-out", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert (await api.get("/")).status_code == 303


async def test_an_expired_session_goes_back_to_sign_in(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    expired = mint_token(db_settings, organization_id="org-a", role="admin", ttl_seconds=-60)
    api.cookies.set(SESSION_COOKIE, expired)
    assert (await api.get("/")).headers["location"] == "/ui/sign-in"
    fragment = await api.get("/ui/providers/heygen/connect", headers=FRAGMENT)
    assert fragment.status_code == 401
    assert fragment.headers["x-arkyra-redirect"] == "/ui/sign-in"


# -- the dashboard ----------------------------------------------------------------------------


async def test_dashboard_lists_every_provider_with_category_counts(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await sign_in(api, db_settings)
    response = await api.get("/")
    html = response.text
    providers = all_providers()
    for cls in providers:
        assert f'data-provider="{cls.identifier}"' in html
    for key, _ in dashboard.CATEGORIES:
        count = sum(1 for cls in providers if cls.category == key)
        assert re.search(
            rf'data-category="{key}"[^>]*>[^<]+<span class="chip__count">{count}<', html
        )
    assert html.count("Not connected") == len(providers)
    assert "Content-Security-Policy" in response.headers
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


async def test_deprecated_providers_are_marked(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await sign_in(api, db_settings)
    html = (await api.get("/")).text
    deprecated = [cls for cls in all_providers() if cls.deprecated]
    assert deprecated, "the catalogue has no deprecated provider to show"
    for cls in deprecated:
        card = html.split(f'data-provider="{cls.identifier}"', 1)[1].split("</li>", 1)[0]
        assert "Deprecated" in card


async def test_category_filter_shows_only_that_category(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await sign_in(api, db_settings)
    html = (await api.get("/", params={"category": "audio"})).text
    shown = set(re.findall(r'<li class="card" data-provider="([^"]+)"', html))
    assert shown == {c.identifier for c in all_providers() if c.category == "audio"}
    unknown = (await api.get("/", params={"category": "nope"})).text
    assert len(re.findall(r'<li class="card"', unknown)) == len(all_providers())


# -- connect ----------------------------------------------------------------------------------


async def test_connect_form_renders_declared_fields_by_kind(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    await sign_in(api, db_settings)
    heygen = (await api.get("/ui/providers/heygen/connect")).text
    assert re.search(r'<input id="field-api_key" name="api_key"\s+type="password"', heygen)
    assert re.search(r'name="api_key"[^>]*required', heygen, re.S)
    ga4 = (await api.get("/ui/providers/ga4/connect", headers=FRAGMENT)).text
    assert '<textarea id="field-service_account_json"' in ga4
    assert "<html" not in ga4  # a fragment for the modal
    amplitude = (await api.get("/ui/providers/amplitude/connect")).text
    assert '<select id="field-region" name="region"' in amplitude
    assert '<option value="eu"' in amplitude
    assert "<html" in amplitude
    assert (await api.get("/ui/providers/nope/connect")).status_code == 404


async def test_connect_with_a_good_key_changes_the_status(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await connect_form(api, csrf, HEYGEN_KEY)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/?connected=heygen"
    html = (await api.get(response.headers["location"])).text
    card = html.split('data-provider="heygen"', 1)[1].split("</li>\n  \n", 1)[0]
    assert "Connected as" in card
    assert "HeyGen is connected as" in html
    assert HEYGEN_KEY not in html


async def test_connect_from_the_modal_answers_with_a_redirect_header(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await api.post(
        "/ui/providers/heygen/connect",
        data={"csrf_token": csrf, "api_key": HEYGEN_KEY},
        headers=FRAGMENT,
    )
    assert response.status_code == 200
    assert response.headers["x-arkyra-redirect"] == "/?connected=heygen"


async def test_a_refused_key_shows_the_vendor_reason_and_never_the_key(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    bad = "wrong_key_that_heygen_refuses_123456"
    response = await connect_form(api, csrf, bad, label="Marketing")
    assert response.status_code == 400
    assert "HeyGen refused the connection" in response.text
    assert re.search(r"[Uu]nauthori[sz]ed|[Ii]nvalid", response.text)
    assert bad not in response.text
    assert 'value="Marketing"' in response.text  # non-secret values are kept
    assert "Not connected" in (await api.get("/")).text


async def test_the_server_checks_required_fields_too(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    response = await connect_form(api, csrf, "   ")
    assert response.status_code == 422
    assert "API key is required" in response.text
    assert 'aria-invalid="true"' in response.text
    select = await connect_form(api, csrf, HEYGEN_KEY, api_version="v9")
    assert select.status_code == 422
    assert "must be one of" in select.text


async def test_a_vendor_outage_is_not_called_a_refusal(
    api: httpx.AsyncClient, db_settings: Settings, sandbox_state: SandboxState
) -> None:
    csrf = await sign_in(api, db_settings)
    sandbox_state.faults_for("heygen").error_rate = 1.0
    response = await connect_form(api, csrf, HEYGEN_KEY)
    assert response.status_code == 503
    assert "could not check the credentials now" in response.text
    assert "refused" not in response.text
    assert HEYGEN_KEY not in response.text


async def test_needs_reconnect_and_error_states_show_with_their_reason(
    api: httpx.AsyncClient, db_settings: Settings, store: CredentialStore
) -> None:
    csrf = await sign_in(api, db_settings)
    await connect_form(api, csrf, HEYGEN_KEY)
    integration_id = await integration_id_of(api)
    await store.mark(integration_id, IntegrationStatus.NEEDS_RECONNECT, "the key was revoked")
    html = (await api.get("/")).text
    card = html.split('data-provider="heygen"', 1)[1].split("</li>\n  \n", 1)[0]
    assert "Needs reconnect: Sandbox Creator" in card
    assert "the key was revoked" in card
    voices = await api.get(f"/ui/integrations/{integration_id}/functions/voices")
    assert "needs to be connected again" in voices.text
    await store.mark(integration_id, IntegrationStatus.ERROR, "vendor account suspended")
    html = (await api.get("/")).text
    assert "Error: Sandbox Creator" in html
    assert "vendor account suspended" in html


async def test_connect_attempts_count_against_the_organizations_limit(
    make_app: Callable[..., FastAPI], db_settings: Settings
) -> None:
    app = make_app(limits={"connect": "2/minute"})
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=API_URL) as api:
            csrf = await sign_in(api, db_settings)
            for _ in range(2):
                assert (await connect_form(api, csrf, "bad_key_0123456789")).status_code == 400
            third = await connect_form(api, csrf, HEYGEN_KEY)
            assert third.status_code == 429
            assert "Retry-After" in third.headers
            assert "Not connected" in (await api.get("/")).text


async def test_members_cannot_connect_or_disconnect(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings, role="member")
    html = (await api.get("/")).text
    assert "/ui/providers/heygen/connect" not in html
    assert (await api.get("/ui/providers/heygen/connect")).status_code == 403
    assert (await connect_form(api, csrf, HEYGEN_KEY)).status_code == 403


# -- one integration --------------------------------------------------------------------------


async def test_manage_page_browse_and_search_a_list_function(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    await connect_form(api, csrf, HEYGEN_KEY)
    integration_id = await integration_id_of(api)
    page = (await api.get(f"/ui/integrations/{integration_id}")).text
    assert f"/ui/integrations/{integration_id}/functions/voices" in page
    assert f"/ui/integrations/{integration_id}/disconnect" in page
    assert HEYGEN_KEY not in page
    voices = await api.get(f"/ui/integrations/{integration_id}/functions/voices")
    assert voices.status_code == 200
    rows = re.findall(r"<tr><td>", voices.text)
    assert len(rows) >= 2
    first_row = re.search(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", voices.text)
    assert first_row
    name = first_row.group(2)
    searched = await api.get(
        f"/ui/integrations/{integration_id}/functions/voices", params={"q": name}
    )
    matched = re.findall(r"<tr><td>", searched.text)
    assert 1 <= len(matched) < len(rows)
    assert name in searched.text
    missing = await api.get(f"/ui/integrations/{integration_id}/functions/send_data")
    assert missing.status_code == 404


async def test_another_organizations_integration_is_not_found(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings, org="org-a")
    await connect_form(api, csrf, HEYGEN_KEY)
    integration_id = await integration_id_of(api)
    api.cookies.clear()
    other = await sign_in(api, db_settings, org="org-b")
    assert (await api.get(f"/ui/integrations/{integration_id}")).status_code == 404
    removed = await api.post(
        f"/ui/integrations/{integration_id}/disconnect", data={"csrf_token": other}
    )
    assert removed.status_code == 404


async def test_disconnect_asks_first_then_removes(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    csrf = await sign_in(api, db_settings)
    await connect_form(api, csrf, HEYGEN_KEY)
    integration_id = await integration_id_of(api)
    confirm = await api.get(f"/ui/integrations/{integration_id}/disconnect", headers=FRAGMENT)
    assert "Disconnect HeyGen?" in confirm.text
    assert "Connected as" in (await api.get("/")).text  # asking removed nothing
    response = await api.post(
        f"/ui/integrations/{integration_id}/disconnect", data={"csrf_token": csrf}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/?disconnected=heygen"
    html = (await api.get(response.headers["location"])).text
    assert "HeyGen was disconnected." in html
    assert html.count("Not connected") == len(all_providers())


# -- AI page ----------------------------------------------------------------------------------


async def test_ai_page_charts_this_organizations_cost_per_provider_per_day(
    api: httpx.AsyncClient, db_settings: Settings, db: Database
) -> None:
    await sign_in(api, db_settings, org="org-a")
    today = datetime.now(UTC)
    rows = [
        ("org-a", 0, "openai", "0.5"),
        ("org-a", 0, "glm", "0.25"),
        ("org-a", 1, "openai", "1.0"),
        ("org-a", 2, "claude", "0.1"),
        ("org-a", 40, "claude", "7"),  # older than the chart's window
        ("org-b", 0, "mistral", "9"),  # another organization
    ]
    async with db.transaction() as session:
        for org, days_ago, provider, cost in rows:
            session.add(
                AIUsage(
                    request_id=uuid.uuid4().hex,
                    attempt_no=1,
                    organization_id=org,
                    provider=provider,
                    model="m",
                    cost_usd=Decimal(cost),
                    created_at=today - timedelta(days=days_ago),
                )
            )
    html = (await api.get("/ui/ai")).text
    chart = html.split('id="chart-title"', 1)[1]
    assert "<svg" in chart
    assert chart.count('<rect x="') == 4
    assert "mistral" not in chart
    assert "7.0000" not in chart
    table = chart.split('id="cost-table"', 1)[1]
    assert "1.0000" in table
    assert "0.2500" in table


async def test_ai_page_says_plainly_when_the_router_api_is_absent(
    api: httpx.AsyncClient, db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_in(api, db_settings)
    monkeypatch.setattr(dashboard, "has_route", lambda request, path: False)
    html = (await api.get("/ui/ai")).text
    assert html.count("Not available: the AI router&#39;s API is not part of this deployment") == 3


async def test_ai_page_shows_health_breakers_quota_and_usage(
    api: httpx.AsyncClient, db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_in(api, db_settings, org="org-a")
    asked: list[str] = []
    answers = {
        "/ai/providers?probe=true": {
            "providers": [
                {"provider": "glm", "available": True, "healthy": True,
                 "breaker": {"state": "closed", "retry_in_seconds": None},
                 "metrics": {"requests": 10, "success_rate": 0.9, "latency_p50_ms": 120.0,
                             "latency_p95_ms": 480.0, "cost_usd": 0.01},
                 "default_model": "glm-4.7"},
                {"provider": "openai", "available": True, "healthy": False,
                 "breaker": {"state": "open", "retry_in_seconds": 29.6},
                 "metrics": {"requests": 3, "success_rate": 0.0}},
            ]
        },
        "/ai/quota/org-a": {
            "organization_id": "org-a", "limited": True, "period": "month",
            "period_key": "2026-11", "resets_at": "2026-12-01T00:00:00+00:00",
            "usd": {"limit": "50", "spent": "12.5", "reserved": "0.4"},
            "tokens": {"limit": None, "spent": 1000, "reserved": 0},
        },
        "/ai/usage/org-a": {
            "organization_id": "org-a",
            "by_provider": [{"key": "glm", "attempts": 10, "cost_usd": "0.01"}],
            "by_task_type": [], "by_day": [],
        },
    }  # fmt: skip

    async def fake_api_get(request: object, session: object, path: str) -> tuple[int, object]:
        asked.append(path)
        return 200, answers[path]

    monkeypatch.setattr(dashboard, "has_route", lambda request, path: True)
    monkeypatch.setattr(dashboard, "api_get", fake_api_get)
    html = (await api.get("/ui/ai", params={"probe": "true"})).text
    assert asked == list(answers)
    glm = html.split('<tr data-provider="glm">', 1)[1].split("</tr>", 1)[0]
    assert "Healthy" in glm
    assert "Closed" in glm
    assert "90%" in glm
    assert "120 / 480 ms" in glm
    openai = html.split('<tr data-provider="openai">', 1)[1].split("</tr>", 1)[0]
    assert "Failing check" in openai
    assert "Open, retry in 30 s" in openai
    quota = html.split('id="quota"', 1)[1].split("</dl>", 1)[0]
    assert "12.5 spent, 0.4 reserved, limit 50" in quota
    assert "1000 spent, 0 reserved, limit none" in quota
    assert "By provider" in html


async def test_ai_page_with_this_apps_router(
    api: httpx.AsyncClient, db_settings: Settings, app: FastAPI
) -> None:
    if "/ai/providers" not in app.openapi()["paths"]:
        pytest.skip("this checkout has no AI router API")
    await sign_in(api, db_settings, org="org-a")
    html = (await api.get("/ui/ai")).text
    providers = html.split('id="providers-title"', 1)[1].split("</section>", 1)[0]
    assert 'id="ai-providers"' in providers
    assert "Not available" not in providers


def test_chart_stacks_costs_per_day() -> None:
    chart = dashboard.Chart.of(
        [
            ("2026-11-24", "openai", Decimal("1")),
            ("2026-11-24", "glm", Decimal("1")),
            ("2026-11-25", "openai", Decimal("1")),
        ]
    )
    assert chart.days == ["2026-11-24", "2026-11-25"]
    assert chart.providers == ["glm", "openai"]
    assert chart.max_total == Decimal(2)
    first_day = [b for b in chart.bars if "2026-11-24" in b.label]
    assert sum(b.height for b in first_day) == pytest.approx(180.0)
    second_day = [b for b in chart.bars if "2026-11-25" in b.label]
    assert second_day[0].height == pytest.approx(90.0)
    assert chart.cost("2026-11-25", "glm") == "0.0000"


def test_table_flattens_and_filters_items() -> None:
    table = dashboard.Table.of(
        [
            {"name": "Ava", "id": "v1", "tags": ["x"], "language": "English"},
            {"name": "Bruno", "id": "v2", "tags": [], "language": "Portuguese"},
        ],
        q="portu",
    )
    assert table.columns == ["id", "name", "language"]
    assert table.rows == [["v2", "Bruno", "Portuguese"]]
    assert (table.total, table.matched) == (2, 1)


# -- pipelines --------------------------------------------------------------------------------


async def test_pipelines_say_plainly_when_prefect_is_absent(
    api: httpx.AsyncClient, db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_in(api, db_settings)
    monkeypatch.setattr(dashboard, "prefect_target", lambda: None)
    html = (await api.get("/ui/pipelines")).text
    assert "No Prefect API is configured" in html
    assert "PREFECT_API_URL" in html


async def test_run_now_starts_a_prefect_run_and_links_to_it(
    api: httpx.AsyncClient, db_settings: Settings
) -> None:
    from prefect.client.orchestration import get_client

    csrf = await sign_in(api, db_settings)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(f"dashboard-test-{uuid.uuid4().hex[:8]}")
        deployment_id = await client.create_deployment(flow_id=flow_id, name="nightly")
    try:
        page = (await api.get("/ui/pipelines")).text
        assert "nightly" in page
        row = page.split('<th scope="row">nightly</th>', 1)[1].split("</tr>", 1)[0]
        assert "None" not in row
        assert f"/ui/pipelines/{deployment_id}/run" in page
        response = await api.post(f"/ui/pipelines/{deployment_id}/run", data={"csrf_token": csrf})
        assert response.status_code == 303, response.text
        run_id = response.headers["location"].split("started=", 1)[1]
        async with get_client() as client:
            flow_run = await client.read_flow_run(uuid.UUID(run_id))
        assert flow_run.deployment_id == deployment_id
        html = (await api.get(response.headers["location"])).text
        target = dashboard.prefect_target()
        assert target is not None
        assert f'href="{target.ui_url}/runs/flow-run/{run_id}"' in html
        assert not target.ui_url.endswith("/api")
    finally:
        async with get_client() as client:
            await client.delete_deployment(deployment_id)


# -- static assets ----------------------------------------------------------------------------


async def test_static_assets_and_a_logo_per_provider(api: httpx.AsyncClient) -> None:
    css = await api.get("/static/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert (await api.get("/static/app.js")).headers["content-type"].startswith("text/javascript")
    for cls in all_providers():
        assert dashboard.logo_url(cls.identifier) == f"/static/logos/{cls.identifier}.svg"
        logo = await api.get(dashboard.logo_url(cls.identifier))
        assert logo.status_code == 200
        assert logo.headers["content-type"].startswith("image/svg+xml")
        assert "http" not in logo.text.replace("http://www.w3.org/2000/svg", "")
    assert (await api.get("/static/../session.py")).status_code == 404
    assert (await api.get("/static/%2e%2e/session.py")).status_code == 404
    assert dashboard.logo_url("unknown") == "/static/logos/_generic.svg"


def test_every_page_template_compiles() -> None:
    for name in dashboard.TEMPLATES.env.list_templates():
        dashboard.TEMPLATES.env.get_template(name)
