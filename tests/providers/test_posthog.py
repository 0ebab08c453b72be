"""PostHog provider against the contract (respx for us.posthog.com) and the sandbox end to end.

Request shapes (paths, Bearer personal key, HogQL body), the project-key refusal, host
handling, the asynchronous query lifecycle, ``next``-link paging, every documented error and
typed rows / DataFrame dtypes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import respx

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    JobDeadlineExceeded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
    UnsafeURL,
)
from arkyra.providers import ThirdPartyProvider, get_provider, provider_class
from arkyra.providers.content import posthog as posthog_module
from arkyra.providers.content.posthog import (
    PostHogData,
    PostHogProvider,
    column_kind,
    normalize_host,
)
from arkyra.sandbox.state import SandboxState
from tests.conftest import make_settings

BASE = "https://us.posthog.com"
KEY = "phx_live_0123456789abcdefghijklmnopqrstuvwxyz"
CREDS = {"api_key": KEY, "project_id": "4242", "host": BASE}
QUERY_PATH = "/api/projects/4242/query/"

ME = {
    "uuid": "u-1",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "team": {"id": 4242, "uuid": "t-1", "name": "Web"},
    "organization": {"id": "org-7", "name": "Analytical Engines"},
    "organizations": [{"id": "org-7", "name": "Analytical Engines"}],
}

HOGQL_OK = {
    "results": [
        ["$pageview", 120, 1.5, True, "2026-10-01T12:00:00.123000Z", "2026-10-01"],
        ["signed_up", 7, None, False, "2026-09-30T08:00:00Z", "2026-09-30"],
    ],
    "columns": ["event", "count()", "ratio", "flag", "last_seen", "day"],
    "types": [
        "String",
        "UInt64",
        "Nullable(Float64)",
        "Bool",
        "DateTime64(6, 'UTC')",
        "Date",
    ],
    "hasMore": False,
    "limit": 100,
    "offset": 0,
}


def drf_error(kind: str, code: str, detail: str) -> dict[str, Any]:
    return {"type": kind, "code": code, "detail": detail, "attr": None}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def posthog(tmp_path: Path, http: httpx.AsyncClient) -> PostHogProvider:
    """The provider on the real hosts; one attempt so error tests stay fast."""
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=1)
    provider = get_provider("posthog", settings=settings, client=http)
    assert isinstance(provider, PostHogProvider)
    return provider


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def sent_json(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# -- registration and credentials --------------------------------------------------------------


def test_registered_with_fixed_fields() -> None:
    cls = provider_class("posthog")
    assert cls.category == "content"
    fields = {f.name: f for f in cls.fields}
    assert list(fields) == ["api_key", "host", "project_id"]
    assert fields["api_key"].is_secret
    assert fields["host"].kind == "text"
    assert fields["host"].default == BASE
    assert {"hogql", "events"} <= set(cls.exposed)


def test_validate_credentials_defaults_host_and_refuses_project_keys() -> None:
    clean = PostHogProvider.validate_credentials({"api_key": KEY, "project_id": "12"})
    assert clean["host"] == BASE
    with pytest.raises(InvalidInput) as caught:
        PostHogProvider.validate_credentials({"api_key": "phc_abc123", "project_id": "x"})
    assert "project API key" in caught.value.errors["api_key"]
    assert "project_id" in caught.value.errors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("eu", "https://eu.posthog.com"),
        ("https://eu.i.posthog.com/", "https://eu.posthog.com"),
        ("https://PostHog.Example.com/", "https://posthog.example.com"),
        ("https://example.com/posthog/", "https://example.com/posthog"),
        ("", BASE),
    ],
)
def test_normalize_host_accepts_cloud_and_self_hosted(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://posthog.example.com",
        "https://127.0.0.1",
        "https://2130706433",
        "https://10.1.2.3",
        "https://169.254.169.254",
        "https://localhost",
        "https://posthog.internal",
        "https://user:pw@posthog.example.com",
        "https://posthog.example.com/?next=evil",
    ],
)
def test_normalize_host_refuses_unsafe_hosts(raw: str) -> None:
    with pytest.raises(UnsafeURL):
        normalize_host(raw)


async def test_project_key_is_refused_before_any_call(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    creds = {**CREDS, "api_key": "phc_public_project_token_123"}
    for call in (
        posthog.check_connection(creds),
        posthog.call("hogql", creds, {"query": "SELECT 1"}),
        posthog.call("events", creds, {}),
    ):
        with pytest.raises(InvalidCredentials) as caught:
            await call
        assert caught.value.code == "project_api_key"
        assert "project API key (phc_...)" in str(caught.value)
        assert "personal API key" in str(caught.value)
        assert "phc_public_project_token_123" not in str(caught.value)
    assert not api.calls


async def test_non_numeric_project_id_is_refused(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    with pytest.raises(InvalidInput):
        await posthog.call("hogql", {**CREDS, "project_id": "1/../../x"}, {"query": "SELECT 1"})
    assert not api.calls


# -- hosts and base URLs -----------------------------------------------------------------------


async def test_check_connection_shape_and_identity(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    route = api.get("/api/users/@me/").respond(json=ME)
    account = await posthog.check_connection(CREDS)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert account.id == "org-7:4242"
    assert account.name == "Analytical Engines (ada@example.com)"
    assert KEY not in repr(account)


async def test_eu_host_field_picks_the_eu_cloud(posthog: PostHogProvider) -> None:
    with respx.mock(base_url="https://eu.posthog.com") as eu:
        route = eu.get("/api/users/@me/").respond(json=ME)
        await posthog.check_connection({**CREDS, "host": "https://eu.posthog.com"})
    assert route.called


async def test_self_hosted_host_is_resolved_and_vetted(
    posthog: PostHogProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    async def fake_check(url: str, **kwargs: Any) -> list[Any]:
        checked.append(url)
        return []

    monkeypatch.setattr(posthog_module.ssrf, "check_url", fake_check)
    with respx.mock(base_url="https://analytics.acme.test/ph") as own:
        route = own.get("/api/users/@me/").respond(json=ME)
        await posthog.check_connection({**CREDS, "host": "https://analytics.acme.test/ph/"})
    assert route.called
    assert checked == ["https://analytics.acme.test/ph"]


async def test_self_hosted_host_resolving_privately_is_refused(
    posthog: PostHogProvider, api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(url: str, **kwargs: Any) -> list[Any]:
        raise UnsafeURL("refusing https://intranet.acme.test: a private address")

    monkeypatch.setattr(posthog_module.ssrf, "check_url", refuse)
    with pytest.raises(UnsafeURL):
        await posthog.check_connection({**CREDS, "host": "https://intranet.acme.test"})


async def test_settings_override_beats_the_host_field(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    settings = make_settings(
        tmp_path, sandbox=False, posthog_base_url="https://proxy.example.org/posthog/"
    )
    provider = get_provider("posthog", settings=settings, client=http)
    with respx.mock(base_url="https://proxy.example.org/posthog") as proxy:
        route = proxy.get("/api/users/@me/").respond(json=ME)
        await provider.check_connection({**CREDS, "host": "https://eu.posthog.com"})
    assert route.called


# -- HogQL -------------------------------------------------------------------------------------


async def test_hogql_request_shape_typed_rows_and_dataframe(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    route = api.post(QUERY_PATH).respond(json=HOGQL_OK)
    result = await posthog.call(
        "hogql",
        CREDS,
        {"query": "SELECT event FROM events WHERE event = {e}", "values": {"e": "x"}, "name": "t"},
    )
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert sent_json(route) == {
        "query": {
            "kind": "HogQLQuery",
            "query": "SELECT event FROM events WHERE event = {e}",
            "values": {"e": "x"},
        },
        "refresh": "blocking",
        "name": "t",
    }
    first = result.rows[0]
    assert first["count()"] == 120
    assert isinstance(first["count()"], int)
    assert first["last_seen"].tzinfo is not None
    assert first["last_seen"].microsecond == 123000
    assert str(first["day"]) == "2026-10-01"
    assert result.rows[1]["ratio"] is None

    frame = result.to_dataframe()
    assert list(frame.columns) == HOGQL_OK["columns"]
    assert frame["event"].dtype == "string"
    assert frame["count()"].dtype == "Int64"
    assert frame["ratio"].dtype == "Float64"
    assert frame["ratio"].isna().tolist() == [False, True]
    assert frame["flag"].dtype == "boolean"
    assert isinstance(frame["last_seen"].dtype, pd.DatetimeTZDtype)
    assert str(frame["last_seen"].dt.tz) == "UTC"
    assert pd.api.types.is_datetime64_dtype(frame["day"])


def test_column_kinds_unwrap_clickhouse_wrappers() -> None:
    assert column_kind("Nullable(LowCardinality(String))") == "string"
    assert column_kind("Nullable(DateTime64(6, 'UTC'))") == "datetime"
    assert column_kind("Int8") == "int"
    assert column_kind("Decimal(18, 2)") == "float"
    assert column_kind("Array(String)") == "other"


async def test_hogql_async_answer_is_polled_to_completion(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    api.post(QUERY_PATH).respond(
        202, json={"query_status": {"id": "q-123", "complete": False, "query_async": True}}
    )
    status = api.get(f"{QUERY_PATH}q-123/").mock(
        side_effect=[
            httpx.Response(202, json={"query_status": {"id": "q-123", "complete": False}}),
            httpx.Response(202, json={"query_status": {"id": "q-123", "complete": False}}),
            httpx.Response(
                200,
                json={"query_status": {"id": "q-123", "complete": True, "results": HOGQL_OK}},
            ),
        ]
    )
    result = await posthog.call("hogql", CREDS, {"query": "SELECT 1", "refresh": "async"})
    assert status.call_count == 3
    assert status.calls.last.request.headers["Authorization"] == f"Bearer {KEY}"
    assert result.query_id == "q-123"
    assert [r["event"] for r in result.rows] == ["$pageview", "signed_up"]


async def test_hogql_async_failure_carries_posthogs_reason(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    api.post(QUERY_PATH).respond(202, json={"query_status": {"id": "q-9", "complete": False}})
    api.get(f"{QUERY_PATH}q-9/").respond(
        400,
        json={
            "query_status": {
                "id": "q-9",
                "complete": True,
                "error": True,
                "error_message": "Unknown table `evnts`",
            }
        },
    )
    with pytest.raises(BadRequest) as caught:
        await posthog.call("hogql", CREDS, {"query": "SELECT 1 FROM evnts"})
    assert "Unknown table" in caught.value.message


async def test_hogql_async_is_bounded_by_a_deadline(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    api.post(QUERY_PATH).respond(202, json={"query_status": {"id": "slow", "complete": False}})
    api.get(f"{QUERY_PATH}slow/").respond(
        202, json={"query_status": {"id": "slow", "complete": False}}
    )
    with pytest.raises(JobDeadlineExceeded) as caught:
        await posthog.call("hogql", CREDS, {"query": "SELECT 1", "max_wait_seconds": 0.05})
    assert caught.value.details["job_id"] == "slow"


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (401, drf_error("authentication_error", "authentication_failed", "Bad key"),
         InvalidCredentials, "authentication_failed"),
        (403, drf_error("authentication_error", "permission_denied", "Missing scope query:read"),
         InvalidCredentials, "permission_denied"),
        (402, drf_error("quota_limit_exceeded", "quota_limit_exceeded", "Over quota"),
         QuotaExhausted, "quota_limit_exceeded"),
        (400, drf_error("validation_error", "syntax_error", "Syntax error at line 1"),
         BadRequest, "syntax_error"),
        (404, drf_error("invalid_request", "not_found", "Not found."), BadRequest, "not_found"),
        (504, drf_error("server_error", "query_timeout", "Query timed out"), Transient, None),
        (503, drf_error("server_error", "error", "ClickHouse at capacity"), Transient, None),
        (512, drf_error("server_error", "estimated_too_long", "Estimated run time too long"),
         BadRequest, None),
    ],
)  # fmt: skip
async def test_errors_map_to_the_taxonomy(
    posthog: PostHogProvider,
    api: respx.MockRouter,
    status: int,
    body: dict[str, Any],
    expected: type[ProviderError],
    code: str | None,
) -> None:
    route = api.post(QUERY_PATH).respond(status, json=body)
    with pytest.raises(expected) as caught:
        await posthog.call("hogql", CREDS, {"query": "SELECT 1"})
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.message.startswith(body["detail"])
    if code is not None:
        assert caught.value.code == code
    assert KEY not in str(caught.value)
    assert route.call_count == 1


async def test_throttled_query_carries_retry_after_and_is_not_waited_out(
    tmp_path: Path, http: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    """The hourly HogQL budget answers 429 with a long Retry-After: give it to the caller."""
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("posthog", settings=settings, client=http)
    route = api.post(QUERY_PATH).respond(
        429,
        json=drf_error("throttled_error", "throttled", "Expected available in 1800 seconds."),
        headers={"Retry-After": "1800"},
    )
    with pytest.raises(RateLimited) as caught:
        await provider.call("hogql", CREDS, {"query": "SELECT 1"})
    assert caught.value.retry_after == 1800
    assert route.call_count == 1


async def test_short_throttle_is_retried_once_then_succeeds(
    tmp_path: Path, http: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("posthog", settings=settings, client=http)
    route = api.post(QUERY_PATH).mock(
        side_effect=[
            httpx.Response(
                429,
                json=drf_error("throttled_error", "throttled", "slow down"),
                headers={"Retry-After": "0"},
            ),
            httpx.Response(200, json=HOGQL_OK),
        ]
    )
    result = await provider.call("hogql", CREDS, {"query": "SELECT 1"})
    assert route.call_count == 2
    assert len(result.rows) == 2


async def test_query_post_is_not_repeated_after_a_server_error(
    tmp_path: Path, http: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("posthog", settings=settings, client=http)
    route = api.post(QUERY_PATH).respond(504, json=drf_error("server_error", "x", "timeout"))
    with pytest.raises(Transient):
        await provider.call("hogql", CREDS, {"query": "SELECT 1"})
    assert route.call_count == 1


async def test_send_data_gives_a_summary_item_and_the_frame(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    api.post(QUERY_PATH).respond(json=HOGQL_OK)
    data = await posthog.send_data(CREDS, {"query": "SELECT 1", "name": "Weekly events"})
    assert isinstance(data, PostHogData)
    assert data.item.source == "posthog"
    assert data.item.title == "Weekly events"
    assert data.item.fields["row_count"] == 2
    assert "$pageview" in data.item.body
    assert data.frame["count()"].dtype == "Int64"
    with pytest.raises(InvalidInput):
        await posthog.send_data(CREDS, {"sql": "SELECT 1"})


# -- events ------------------------------------------------------------------------------------


def raw_event(i: int) -> dict[str, Any]:
    return {
        "id": f"e-{i}",
        "distinct_id": f"d-{i}",
        "event": "$pageview",
        "timestamp": f"2026-10-01T12:00:0{i}Z",
        "properties": {"i": i},
        "elements": [],
    }


async def test_events_follow_next_links_on_our_own_host(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    route = api.get("/api/projects/4242/events/").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    # A proxied self-host may report an internal name: the path is kept,
                    # the host is always ours.
                    "next": "http://web-internal:8000/api/projects/4242/events/?limit=2&offset=2",
                    "results": [raw_event(0), raw_event(1)],
                },
            ),
            httpx.Response(200, json={"next": None, "results": [raw_event(2)]}),
        ]
    )
    result = await posthog.call("events", CREDS, {"event": "$pageview", "page_size": 2})
    assert [e.id for e in result.events] == ["e-0", "e-1", "e-2"]
    assert not result.truncated
    first, second = (call.request for call in route.calls)
    assert first.url.params["event"] == "$pageview"
    assert first.url.params["limit"] == "2"
    assert second.url.host == "us.posthog.com"
    assert second.url.params["offset"] == "2"
    assert second.headers["Authorization"] == f"Bearer {KEY}"
    frame = result.to_dataframe()
    assert isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype)
    assert frame["event"].dtype == "string"


async def test_events_refuse_a_next_link_elsewhere(
    posthog: PostHogProvider, api: respx.MockRouter
) -> None:
    api.get("/api/projects/4242/events/").respond(
        json={"next": "https://evil.example/steal?x=1", "results": [raw_event(0)]}
    )
    with pytest.raises(Transient):
        await posthog.call("events", CREDS, {})


# -- sandbox, end to end -----------------------------------------------------------------------

SANDBOX_CREDS = {"api_key": "phx_sandbox_key", "project_id": "1", "host": BASE}


@pytest.fixture
def sandbox_posthog(provider_factory: Callable[[str], ThirdPartyProvider]) -> PostHogProvider:
    provider = provider_factory("posthog")
    assert isinstance(provider, PostHogProvider)
    return provider


async def test_sandbox_check_connection(sandbox_posthog: PostHogProvider) -> None:
    account = await sandbox_posthog.check_connection(SANDBOX_CREDS)
    assert account.id.endswith(":1")
    assert "Acme" in account.name


async def test_sandbox_blocking_and_async_queries(
    sandbox_posthog: PostHogProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.faults_for("posthog").job_seconds = 0.05
    blocking = await sandbox_posthog.call("hogql", SANDBOX_CREDS, {"query": "SELECT 1 LIMIT 3"})
    assert len(blocking.rows) == 3
    assert blocking.has_more
    polled = await sandbox_posthog.call(
        "hogql", SANDBOX_CREDS, {"query": "SELECT event, count() FROM events", "refresh": "async"}
    )
    assert polled.query_id
    assert sum(r["count()"] for r in polled.rows) == 250
    status_calls = [
        k for k in sandbox_state.calls if "/query/" in k and k.startswith("posthog GET")
    ]
    assert status_calls, "the async query was never polled"
    frame = polled.to_dataframe()
    assert frame["count()"].dtype == "Int64"
    assert isinstance(frame["max(timestamp)"].dtype, pd.DatetimeTZDtype)


async def test_sandbox_events_span_pages(
    sandbox_posthog: PostHogProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("posthog")["event_count"] = 250
    result = await sandbox_posthog.call("events", SANDBOX_CREDS, {"page_size": 100})
    assert len(result.events) == 250
    assert len({e.id for e in result.events}) == 250
    assert sandbox_state.calls["posthog GET /posthog/api/projects/1/events/"] == 3
    filtered = await sandbox_posthog.call(
        "events", SANDBOX_CREDS, {"event": "purchase", "page_size": 20, "max_events": 30}
    )
    assert len(filtered.events) == 30
    assert filtered.truncated
    assert {e.event for e in filtered.events} == {"purchase"}


async def test_sandbox_errors_in_posthogs_shape(
    sandbox_posthog: PostHogProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("posthog")["revoked_keys"] = {"phx_revoked"}
    with pytest.raises(InvalidCredentials) as denied:
        await sandbox_posthog.check_connection({**SANDBOX_CREDS, "api_key": "phx_revoked"})
    assert denied.value.status == 401
    with pytest.raises(BadRequest) as caught:
        await sandbox_posthog.call("hogql", SANDBOX_CREDS, {"query": "DROP TABLE events"})
    assert caught.value.code == "syntax_error"

    sandbox_state.store("posthog")["query_budget_per_hour"] = 1
    await sandbox_posthog.call("hogql", SANDBOX_CREDS, {"query": "SELECT 1"})
    with pytest.raises(RateLimited) as limited:
        await sandbox_posthog.call("hogql", SANDBOX_CREDS, {"query": "SELECT 1"})
    assert limited.value.retry_after is not None
    assert limited.value.retry_after > 60


async def test_sandbox_injected_faults(
    sandbox_posthog: PostHogProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("posthog")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 30
    with pytest.raises(RateLimited):
        await sandbox_posthog.check_connection(SANDBOX_CREDS)
    faults.rate_limit_rate = 0.0
    faults.error_rate = 1.0
    faults.error_status = 503
    with pytest.raises(Transient):
        await sandbox_posthog.check_connection(SANDBOX_CREDS)
    # The identity call is a GET: retried on the same provider up to http_max_attempts.
    assert sandbox_state.calls["posthog GET /posthog/api/users/@me/"] == 1 + 3
