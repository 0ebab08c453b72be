"""GA4: runReport request shape, offset pagination to rowCount, typed DataFrames, quota,
account summaries, error mapping, and end-to-end reports from the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pandas as pd
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, catalogue_entry, provider_class
from arkyra.providers.content.ga4 import Ga4Content, Ga4Provider, Ga4Report, report_frame
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import ga4 as sandbox_ga4
from tests.providers.google_fixtures import (
    google_error,
    google_provider_fixtures,
    register_service_account,
    service_account_fixtures,
    token_mock_fixture,
)

DATA = "https://analyticsdata.googleapis.com"
ADMIN = "https://analyticsadmin.googleapis.com"
EMAIL = "ga4-reader@arkyra-test.iam.gserviceaccount.com"
PROPERTY = "987654321"

rsa_key, key_json, creds = service_account_fixtures(EMAIL, "kid-ga4", {"property_id": PROPERTY})
fresh_token_cache, real = google_provider_fixtures("ga4", Ga4Provider)
mock = token_mock_fixture("ya29.ga4")


HEADERS = {
    "dimensionHeaders": [{"name": "date"}, {"name": "country"}],
    "metricHeaders": [
        {"name": "activeUsers", "type": "TYPE_INTEGER"},
        {"name": "engagementRate", "type": "TYPE_FLOAT"},
        {"name": "averageSessionDuration", "type": "TYPE_SECONDS"},
        {"name": "totalRevenue", "type": "TYPE_CURRENCY"},
    ],
}


def row(date: str, country: str, users: str, rate: str, secs: str, money: str) -> dict:
    return {
        "dimensionValues": [{"value": date}, {"value": country}],
        "metricValues": [{"value": v} for v in (users, rate, secs, money)],
    }


ALL_ROWS = [
    row("20260101", "Germany", "10", "0.5", "12.5", "3.10"),
    row("20260102", "India", "20", "0.25", "60", "0"),
    row("20260103", "Japan", "30", "0.125", "1.5", "9.99"),
    row("20260104", "Brazil", "40", "1", "0", "12"),
    row("(other)", "France", "50", "0", "30", "1.01"),
]


def page_response(request: httpx.Request) -> httpx.Response:
    """A fake runReport that honours offset/limit over ALL_ROWS."""
    body = json.loads(request.content)
    offset, limit = int(body["offset"]), int(body["limit"])
    page = ALL_ROWS[offset : offset + limit]
    quota = {"tokensPerDay": {"consumed": offset + 1, "remaining": 1000 - offset}}
    return httpx.Response(
        200,
        json={
            **HEADERS,
            "rows": page,
            "rowCount": len(ALL_ROWS),
            "metadata": {"currencyCode": "EUR", "timeZone": "Europe/Berlin"},
            "propertyQuota": quota,
            "kind": "analyticsData#runReport",
        },
    )


def test_registration() -> None:
    cls = provider_class("ga4")
    entry = catalogue_entry(cls)
    assert entry["category"] == "content"
    assert [(f["name"], f["kind"]) for f in entry["fields"]] == [
        ("service_account_json", "json"),
        ("property_id", "text"),
    ]
    assert {"run_report", "account_summaries"} <= set(entry["functions"])
    assert cls.default_base_url == DATA


def test_report_frame_types_follow_metric_headers() -> None:
    frame = report_frame(HEADERS["dimensionHeaders"], HEADERS["metricHeaders"], ALL_ROWS)
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert frame["date"].iloc[0] == pd.Timestamp("2026-01-01")
    assert pd.isna(frame["date"].iloc[4])  # "(other)" is not a date
    assert frame["country"].dtype == "string"
    assert frame["activeUsers"].dtype == "Int64"
    for name in ("engagementRate", "averageSessionDuration", "totalRevenue"):
        assert frame[name].dtype == "float64"
    assert frame["totalRevenue"].sum() == pytest.approx(26.10)


# -- request shapes and pagination -------------------------------------------------------------


async def test_run_report_request_shape(
    real: Ga4Provider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.post(f"{DATA}/v1beta/properties/{PROPERTY}:runReport").mock(
        side_effect=page_response
    )
    dimension_filter = {
        "filter": {"fieldName": "country", "stringFilter": {"matchType": "EXACT", "value": "India"}}
    }
    metric_filter = {
        "filter": {
            "fieldName": "activeUsers",
            "numericFilter": {"operation": "GREATER_THAN", "value": {"int64Value": "5"}},
        }
    }
    await real.call(
        "run_report",
        creds,
        {
            "date_ranges": [{"start_date": "2026-01-01", "end_date": "yesterday", "name": "jan"}],
            "dimensions": ["date", "country"],
            "metrics": ["activeUsers"],
            "dimension_filter": dimension_filter,
            "metric_filter": metric_filter,
            "order_bys": [{"metric": {"metricName": "activeUsers"}, "desc": True}],
            "limit": 100,
        },
    )
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Bearer ya29.ga4"
    body = json.loads(request.content)
    assert body == {
        "dateRanges": [{"startDate": "2026-01-01", "endDate": "yesterday", "name": "jan"}],
        "dimensions": [{"name": "date"}, {"name": "country"}],
        "metrics": [{"name": "activeUsers"}],
        "dimensionFilter": dimension_filter,
        "metricFilter": metric_filter,
        "orderBys": [{"metric": {"metricName": "activeUsers"}, "desc": True}],
        "returnPropertyQuota": True,
        "limit": "100",
        "offset": "0",
    }


async def test_run_report_pages_by_offset_until_row_count(
    real: Ga4Provider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.post(f"{DATA}/v1beta/properties/{PROPERTY}:runReport").mock(
        side_effect=page_response
    )
    report = await real.call(
        "run_report", creds, {"dimensions": ["date", "country"], "metrics": ["x"], "limit": 2}
    )
    offsets = [json.loads(c.request.content)["offset"] for c in route.calls]
    assert offsets == ["0", "2", "4"]
    assert isinstance(report, Ga4Report)
    assert (report.pages, report.row_count, len(report.frame)) == (3, 5, 5)
    assert report.frame["country"].tolist() == ["Germany", "India", "Japan", "Brazil", "France"]
    assert report.property_quota == {"tokensPerDay": {"consumed": 5, "remaining": 996}}
    assert report.metadata["currencyCode"] == "EUR"
    assert report.frame["activeUsers"].dtype == "Int64"
    as_dict = report.to_dict()
    json.dumps(as_dict)
    assert as_dict["rows"][0]["date"].startswith("2026-01-01")


async def test_run_report_offset_and_max_rows(
    real: Ga4Provider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.post(f"{DATA}/v1beta/properties/{PROPERTY}:runReport").mock(
        side_effect=page_response
    )
    report = await real.call(
        "run_report", creds, {"metrics": ["x"], "limit": 2, "offset": 1, "max_rows": 3}
    )
    requested = [json.loads(c.request.content) for c in route.calls]
    assert [(r["offset"], r["limit"]) for r in requested] == [("1", "2"), ("3", "1")]
    assert report.frame["activeUsers"].tolist() == [20, 30, 40]


async def test_run_report_needs_a_property(real: Ga4Provider, creds: dict[str, str]) -> None:
    without = {"service_account_json": creds["service_account_json"]}
    with pytest.raises(InvalidInput) as info:
        await real.call("run_report", without, {"metrics": ["activeUsers"]})
    assert "property_id" in info.value.errors
    with pytest.raises(InvalidInput):
        await real.call("run_report", creds, {"metrics": ["activeUsers"], "property_id": "abc"})
    with pytest.raises(InvalidInput):
        await real.call("run_report", creds, {"metrics": []})


async def test_check_connection_pages_account_summaries_on_the_admin_host(
    real: Ga4Provider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    first = {
        "accountSummaries": [
            {"name": "accountSummaries/1", "account": "accounts/1", "displayName": "Other",
             "propertySummaries": [{"property": "properties/111", "displayName": "X"}]}
        ],
        "nextPageToken": "page-2",
    }  # fmt: skip
    second = {
        "accountSummaries": [
            {"name": "accountSummaries/2", "account": "accounts/2", "displayName": "Acme",
             "propertySummaries": [{"property": f"properties/{PROPERTY}", "displayName": "Web"}]}
        ]
    }  # fmt: skip
    route = mock.get(f"{ADMIN}/v1beta/accountSummaries").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=second)]
    )
    account = await real.check_connection(creds)
    assert (account.id, account.name) == ("accounts/2", "Acme")
    params = [dict(c.request.url.params) for c in route.calls]
    assert params == [{"pageSize": "200"}, {"pageSize": "200", "pageToken": "page-2"}]
    assert route.calls[0].request.headers["Authorization"] == "Bearer ya29.ga4"


async def test_check_connection_without_access_explains_the_viewer_role(
    real: Ga4Provider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.get(f"{ADMIN}/v1beta/accountSummaries").respond(200, json={})
    with pytest.raises(InvalidCredentials, match=f"add {EMAIL} as a Viewer"):
        await real.check_connection(creds)
    route.respond(
        200,
        json={"accountSummaries": [{"account": "accounts/1", "displayName": "A",
                                    "propertySummaries": [{"property": "properties/5"}]}]},
    )  # fmt: skip
    with pytest.raises(InvalidCredentials, match=f"properties/{PROPERTY}"):
        await real.check_connection(creds)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "grpc", "message", "error_class"),
    [
        (403, "PERMISSION_DENIED", "User does not have sufficient permissions for this property.",
         InvalidCredentials),
        (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
         InvalidCredentials),
        (429, "RESOURCE_EXHAUSTED", "Exhausted property tokens per hour.", RateLimited),
        (429, "RESOURCE_EXHAUSTED", "Exhausted property tokens per day.", QuotaExhausted),
        (400, "INVALID_ARGUMENT", "Field nope is not a valid metric.", BadRequest),
        (404, "NOT_FOUND", "Property not found.", BadRequest),
        (503, "UNAVAILABLE", "The service is currently unavailable.", Transient),
        (500, "INTERNAL", "Internal error encountered.", Transient),
    ],
)  # fmt: skip
async def test_run_report_errors(
    real: Ga4Provider,
    mock: respx.MockRouter,
    creds: dict[str, str],
    status: int,
    grpc: str,
    message: str,
    error_class: type[Exception],
) -> None:
    mock.post(f"{DATA}/v1beta/properties/{PROPERTY}:runReport").respond(
        status, json=google_error(status, grpc, message)
    )
    with pytest.raises(error_class) as info:
        await real.call("run_report", creds, {"metrics": ["activeUsers"]})
    assert message in str(info.value)
    if grpc == "PERMISSION_DENIED":
        assert f"add {EMAIL} as a Viewer" in str(info.value)


# -- end to end against the sandbox ------------------------------------------------------------


@pytest.fixture
def sandbox(
    provider_factory: Callable[[str], ThirdPartyProvider],
    sandbox_state: SandboxState,
    rsa_key: rsa.RSAPrivateKey,
    key_json: dict[str, str],
) -> Ga4Provider:
    register_service_account(sandbox_state, rsa_key, key_json)
    sandbox_ga4.seed_property(
        sandbox_state, property_id=PROPERTY, account_name="Acme", viewers=[EMAIL], pages=10
    )
    provider = provider_factory("ga4")
    assert isinstance(provider, Ga4Provider)
    return provider


async def test_sandbox_check_and_summaries(sandbox: Ga4Provider, creds: dict[str, str]) -> None:
    account = await sandbox.check_connection(creds)
    assert (account.id, account.name) == ("accounts/1000", "Acme")
    summaries = await sandbox.call("account_summaries", creds, {})
    assert summaries == [
        {
            "account": "accounts/1000",
            "account_name": "Acme",
            "property": f"properties/{PROPERTY}",
            "property_name": "Sandbox property",
            "property_type": "PROPERTY_TYPE_ORDINARY",
        }
    ]


async def test_sandbox_report_across_pages_with_types_and_quota(
    sandbox: Ga4Provider, sandbox_state: SandboxState, creds: dict[str, str]
) -> None:
    params = {
        "date_ranges": [{"start_date": "2026-10-01", "end_date": "2026-10-07"}],
        "dimensions": ["date", "pagePath"],
        "metrics": ["activeUsers", "engagementRate", "averageSessionDuration", "totalRevenue"],
        "limit": 30,
    }
    report = await sandbox.call("run_report", creds, params)
    assert report.row_count == 70  # 7 days x 10 pages
    assert report.pages == 3
    assert len(report.frame) == 70
    frame = report.frame
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert frame["date"].min() == pd.Timestamp("2026-10-01")
    assert frame["pagePath"].dtype == "string"
    assert frame["activeUsers"].dtype == "Int64"
    for name in ("engagementRate", "averageSessionDuration", "totalRevenue"):
        assert frame[name].dtype == "float64"
    assert not frame.duplicated(["date", "pagePath"]).any()
    assert report.property_quota["tokensPerDay"]["consumed"] == 3
    calls = sandbox_state.calls[f"ga4 POST /ga4/v1beta/properties/{PROPERTY}:runReport"]
    assert calls == 3


async def test_sandbox_filters_and_max_rows(sandbox: Ga4Provider, creds: dict[str, str]) -> None:
    params = {
        "date_ranges": [{"start_date": "7daysAgo", "end_date": "yesterday"}],
        "dimensions": ["country", "deviceCategory"],
        "metrics": ["sessions"],
        "dimension_filter": {
            "andGroup": {
                "expressions": [
                    {"filter": {"fieldName": "deviceCategory",
                                "inListFilter": {"values": ["mobile", "tablet"]}}},
                    {"notExpression": {"filter": {"fieldName": "country",
                                                  "stringFilter": {"value": "Japan"}}}},
                ]
            }
        },
        "metric_filter": {
            "filter": {"fieldName": "sessions",
                       "numericFilter": {"operation": "GREATER_THAN", "value": {"int64Value": "0"}}}
        },
        "order_bys": [{"metric": {"metricName": "sessions"}, "desc": True}],
    }  # fmt: skip
    report = await sandbox.call("run_report", creds, params)
    frame = report.frame
    assert set(frame["deviceCategory"]) <= {"mobile", "tablet"}
    assert "Japan" not in set(frame["country"])
    assert frame["sessions"].is_monotonic_decreasing
    limited = await sandbox.call("run_report", creds, {**params, "limit": 3, "max_rows": 4})
    assert limited.frame["sessions"].tolist() == frame["sessions"].tolist()[:4]


async def test_sandbox_send_data_summary_and_frame(
    sandbox: Ga4Provider, creds: dict[str, str]
) -> None:
    content = await sandbox.send_data(
        creds, {"date_ranges": [{"start_date": "2026-10-01", "end_date": "2026-10-14"}]}
    )
    assert isinstance(content, Ga4Content)
    assert len(content.frame) == 14
    summary = content.item
    assert summary.source == "ga4"
    assert summary.fields["row_count"] == 14
    assert summary.fields["totals"]["activeUsers"] == int(content.frame["activeUsers"].sum())
    assert summary.fields["property_quota"]["tokensPerDay"]["remaining"] > 0
    assert "Rows: 14" in summary.body
    json.dumps(summary.model_dump(mode="json"))


async def test_sandbox_errors(
    sandbox: Ga4Provider, sandbox_state: SandboxState, creds: dict[str, str]
) -> None:
    with pytest.raises(BadRequest, match="not a valid metric"):
        await sandbox.call("run_report", creds, {"metrics": ["nope"]})
    sandbox_ga4.seed_property(sandbox_state, property_id="555", viewers=["other@x.test"])
    with pytest.raises(InvalidCredentials, match=f"add {EMAIL} as a Viewer"):
        await sandbox.call("run_report", creds, {"metrics": ["sessions"], "property_id": "555"})
    sandbox_ga4.seed_property(sandbox_state, property_id=PROPERTY, viewers=[EMAIL], daily_tokens=0)
    with pytest.raises(QuotaExhausted, match="per day"):
        await sandbox.call("run_report", creds, {"metrics": ["sessions"]})
    sandbox_ga4.seed_property(sandbox_state, property_id=PROPERTY, viewers=[EMAIL], hourly_tokens=0)
    with pytest.raises(RateLimited, match="per hour"):
        await sandbox.call("run_report", creds, {"metrics": ["sessions"]})


async def test_sandbox_seed_route(sandbox_client: httpx.AsyncClient) -> None:
    response = await sandbox_client.post(
        "/ga4/_sandbox/properties", json={"property_id": "42", "viewers": [EMAIL], "pages": 3}
    )
    assert response.status_code == 201
    assert response.json() == {"property": "properties/42"}
    bad = await sandbox_client.post("/ga4/_sandbox/properties", json={"nope": 1})
    assert bad.status_code == 400
