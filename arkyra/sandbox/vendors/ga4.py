"""GA4 emulator (reference section 4): the Data API's ``runReport`` and the Admin API's
``accountSummaries``, both served under ``/ga4`` with their real paths
(``/ga4/v1beta/properties/{id}:runReport``, ``/ga4/v1beta/accountSummaries``).

Bearer tokens come from the ``google-oauth`` emulator (an Analytics scope is needed) and the
token's service account must be a viewer of the property, otherwise 403 ``PERMISSION_DENIED``
as GA4 answers. Reports are generated deterministically from the requested dimensions (the
cartesian product of their values, dates per date range), so any size is available: raise
``pages`` for more rows. Dimension and metric filters, ``orderBys``, ``limit``/``offset`` with
``rowCount``, all-string values, ``metricHeaders`` types and ``propertyQuota`` follow the API.
Property tokens are spent per request; running out answers 429 ``RESOURCE_EXHAUSTED`` with
GA4's "Exhausted property tokens per day/hour" messages.

Seed with :func:`seed_property` or ``POST /ga4/_sandbox/properties`` (body ``{property_id?,
account_id?, account_name?, display_name?, viewers:[...], pages?, daily_tokens?,
hourly_tokens?}``).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import random
import re
import zlib
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors.google_oauth import api_error_response, authorize, google_error

IDENTIFIER = "ga4"
SERVICE = "analyticsdata.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/analytics.readonly",
    "https://www.googleapis.com/auth/analytics",
    "https://www.googleapis.com/auth/analytics.edit",
)
MAX_LIMIT = 250_000
DEFAULT_LIMIT = 10_000
TODAY = dt.date(2026, 10, 31)  # the sandbox's fixed "today", so reports are reproducible

COUNTRIES = ("United States", "Germany", "India", "Brazil", "Japan", "France")
DEVICES = ("desktop", "mobile", "tablet")
SOURCES = ("google", "(direct)", "newsletter", "linkedin")
CHANNELS = ("Organic Search", "Direct", "Email", "Organic Social")

METRIC_TYPES: dict[str, str] = {
    "activeUsers": "TYPE_INTEGER",
    "totalUsers": "TYPE_INTEGER",
    "newUsers": "TYPE_INTEGER",
    "sessions": "TYPE_INTEGER",
    "screenPageViews": "TYPE_INTEGER",
    "eventCount": "TYPE_INTEGER",
    "keyEvents": "TYPE_INTEGER",
    "engagementRate": "TYPE_FLOAT",
    "bounceRate": "TYPE_FLOAT",
    "screenPageViewsPerSession": "TYPE_FLOAT",
    "averageSessionDuration": "TYPE_SECONDS",
    "userEngagementDuration": "TYPE_SECONDS",
    "totalRevenue": "TYPE_CURRENCY",
    "purchaseRevenue": "TYPE_CURRENCY",
}
DIMENSIONS = (
    "date",
    "country",
    "deviceCategory",
    "pagePath",
    "pageTitle",
    "sessionSource",
    "sessionDefaultChannelGroup",
)
_RELATIVE = re.compile(r"^(\d+)daysAgo$")


def _error(status: int, message: str) -> Response:
    return google_error(status, message)


def _no_access() -> Response:
    return _error(
        403,
        "User does not have sufficient permissions for this property. To learn more about "
        "Property ID, see https://developers.google.com/analytics/devguides/reporting/data/v1/"
        "property-id.",
    )


# -- seeding -----------------------------------------------------------------------------------


def seed_property(
    state: SandboxState,
    *,
    property_id: str = "123456789",
    account_id: str = "1000",
    account_name: str = "Sandbox account",
    display_name: str = "Sandbox property",
    viewers: Iterable[str] = (),
    pages: int = 5,
    daily_tokens: int = 200_000,
    hourly_tokens: int = 40_000,
) -> str:
    """Store a property (and its account) that ``viewers`` may read; return its id."""
    store = state.store(IDENTIFIER)
    store.setdefault("accounts", {})[account_id] = {"displayName": account_name}
    store.setdefault("properties", {})[property_id] = {
        "account": account_id,
        "displayName": display_name,
        "viewers": set(viewers),
        "pages": max(1, int(pages)),
        "tokens": {"day": [0, int(daily_tokens)], "hour": [0, int(hourly_tokens)]},
    }
    return property_id


# -- report generation -------------------------------------------------------------------------


def resolve_date(text: str) -> dt.date:
    if text == "today":
        return TODAY
    if text == "yesterday":
        return TODAY - dt.timedelta(days=1)
    match = _RELATIVE.match(text)
    if match:
        return TODAY - dt.timedelta(days=int(match[1]))
    return dt.date.fromisoformat(text)


def _values_of(name: str, prop: dict[str, Any], dates: list[dt.date]) -> list[str]:
    pages = prop["pages"]
    return {
        "date": [d.strftime("%Y%m%d") for d in dates],
        "country": list(COUNTRIES),
        "deviceCategory": list(DEVICES),
        "pagePath": ["/"] + [f"/blog/post-{i}" for i in range(1, pages)],
        "pageTitle": ["Home"] + [f"Post {i}" for i in range(1, pages)],
        "sessionSource": list(SOURCES),
        "sessionDefaultChannelGroup": list(CHANNELS),
    }[name]


def _metric_value(kind: str, key: str, metric: str) -> str:
    rng = random.Random(zlib.crc32(f"{key}|{metric}".encode()))
    if kind == "TYPE_INTEGER":
        return str(rng.randint(0, 5000))
    if kind == "TYPE_SECONDS":
        return f"{rng.uniform(5, 600):.4f}"
    if kind == "TYPE_CURRENCY":
        return f"{rng.uniform(0, 900):.2f}"
    return f"{rng.random():.6f}"


def _match_string(value: str, spec: dict[str, Any]) -> bool:
    case = bool(spec.get("caseSensitive", False))
    target = str(spec.get("value", ""))
    left, right = (value, target) if case else (value.lower(), target.lower())
    match_type = spec.get("matchType", "EXACT")
    if match_type == "BEGINS_WITH":
        return left.startswith(right)
    if match_type == "ENDS_WITH":
        return left.endswith(right)
    if match_type == "CONTAINS":
        return right in left
    if match_type == "FULL_REGEXP":
        return re.fullmatch(target, value, 0 if case else re.I) is not None
    if match_type == "PARTIAL_REGEXP":
        return re.search(target, value, 0 if case else re.I) is not None
    return left == right


def _number(spec: dict[str, Any]) -> float:
    return float(spec.get("int64Value", spec.get("doubleValue", 0)))


def _match_filter(value: str, spec: dict[str, Any]) -> bool:
    if "stringFilter" in spec:
        return _match_string(value, spec["stringFilter"])
    if "inListFilter" in spec:
        listed = spec["inListFilter"]
        values = [str(v) for v in listed.get("values", [])]
        if listed.get("caseSensitive", False):
            return value in values
        return value.lower() in [v.lower() for v in values]
    if "emptyFilter" in spec:
        return value in ("", "(not set)")
    number = float(value)
    if "numericFilter" in spec:
        numeric = spec["numericFilter"]
        target = _number(numeric.get("value", {}))
        return {
            "EQUAL": number == target,
            "LESS_THAN": number < target,
            "LESS_THAN_OR_EQUAL": number <= target,
            "GREATER_THAN": number > target,
            "GREATER_THAN_OR_EQUAL": number >= target,
        }[numeric.get("operation", "EQUAL")]
    if "betweenFilter" in spec:
        between = spec["betweenFilter"]
        return _number(between["fromValue"]) <= number <= _number(between["toValue"])
    raise ValueError("a filter needs stringFilter, inListFilter, numericFilter or betweenFilter")


def evaluate(expression: dict[str, Any] | None, row: dict[str, str]) -> bool:
    """Apply a GA4 ``FilterExpression`` to one row (field name -> string value)."""
    if not expression:
        return True
    if "andGroup" in expression:
        return all(evaluate(e, row) for e in expression["andGroup"].get("expressions", []))
    if "orGroup" in expression:
        return any(evaluate(e, row) for e in expression["orGroup"].get("expressions", []))
    if "notExpression" in expression:
        return not evaluate(expression["notExpression"], row)
    spec = expression.get("filter") or {}
    name = spec.get("fieldName")
    if name not in row:
        raise ValueError(f"Field {name} is not in the request's dimensions or metrics.")
    return _match_filter(row[name], spec)


def _date_ranges(body: dict[str, Any]) -> list[tuple[str, list[dt.date]]]:
    ranges = body.get("dateRanges") or []
    if not ranges:
        raise ValueError("dateRanges is required for a report without a cohortSpec.")
    if len(ranges) > 4:
        raise ValueError("A request can have at most 4 dateRanges.")
    resolved = []
    for index, spec in enumerate(ranges):
        start, end = resolve_date(spec["startDate"]), resolve_date(spec["endDate"])
        if end < start:
            raise ValueError(f"Invalid date range: {spec['startDate']} is after {spec['endDate']}")
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        resolved.append((spec.get("name") or f"date_range_{index}", days))
    return resolved


def build_report(prop: dict[str, Any], property_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Every row of the report, before ``offset``/``limit`` (``ValueError`` = bad request)."""
    dimensions = [d["name"] for d in body.get("dimensions") or []]
    metrics = [m["name"] for m in body.get("metrics") or []]
    if not dimensions and not metrics:
        raise ValueError("A report needs at least one dimension or metric.")
    for name in dimensions:
        if name not in DIMENSIONS:
            raise ValueError(f"Field {name} is not a valid dimension.")
    for name in metrics:
        if name not in METRIC_TYPES:
            raise ValueError(f"Field {name} is not a valid metric.")
    ranges = _date_ranges(body)
    headers = list(dimensions) + (["dateRange"] if len(ranges) > 1 else [])
    rows: list[tuple[list[str], list[str]]] = []
    for range_name, days in ranges:
        axes = [_values_of(name, prop, days) for name in dimensions]
        for combo in itertools.product(*axes):
            dims = list(combo) + ([range_name] if len(ranges) > 1 else [])
            key = f"{property_id}|" + "|".join(dims)
            values = [_metric_value(METRIC_TYPES[m], key, m) for m in metrics]
            rows.append((dims, values))
    dimension_filter, metric_filter = body.get("dimensionFilter"), body.get("metricFilter")
    if dimension_filter or metric_filter:
        kept = []
        for dims, values in rows:
            named = dict(zip(headers, dims, strict=True))
            if evaluate(dimension_filter, named) and evaluate(
                metric_filter, dict(zip(metrics, values, strict=True))
            ):
                kept.append((dims, values))
        rows = kept
    for order in reversed(body.get("orderBys") or []):
        rows.sort(key=_order_key(order, headers, metrics), reverse=bool(order.get("desc")))
    return {"dimensions": headers, "metrics": metrics, "rows": rows}


def _order_key(order: dict[str, Any], headers: list[str], metrics: list[str]) -> Any:
    if "metric" in order:
        index = metrics.index(order["metric"]["metricName"])
        return lambda row: float(row[1][index])
    index = headers.index(order["dimension"]["dimensionName"])
    return lambda row: row[0][index]


def _quota(prop: dict[str, Any]) -> dict[str, Any]:
    day, hour = prop["tokens"]["day"], prop["tokens"]["hour"]
    return {
        "tokensPerDay": {"consumed": day[0], "remaining": max(0, day[1])},
        "tokensPerHour": {"consumed": hour[0], "remaining": max(0, hour[1])},
        "concurrentRequests": {"consumed": 0, "remaining": 10},
        "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
        "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
        "tokensPerProjectPerHour": {"consumed": hour[0], "remaining": max(0, hour[1])},
    }


def _spend(prop: dict[str, Any], cost: int) -> Response | None:
    """Charge ``cost`` property tokens, or the 429 GA4 gives when they are gone."""
    day, hour = prop["tokens"]["day"], prop["tokens"]["hour"]
    if day[1] < cost:
        return google_error(
            429,
            "Exhausted property tokens per day. These quota tokens will return in under 24 "
            "hours. To learn more, see https://developers.google.com/analytics/devguides/"
            "reporting/data/v1/quotas",
        )
    if hour[1] < cost:
        return google_error(
            429,
            "Exhausted property tokens per hour. These quota tokens will return in under an "
            "hour. To learn more, see https://developers.google.com/analytics/devguides/"
            "reporting/data/v1/quotas",
        )
    for bucket in (day, hour):
        bucket[0] += cost
        bucket[1] -= cost
    return None


def _int_param(body: dict[str, Any], name: str, default: int) -> int:
    raw = body.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid value for {name}: {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be non-negative.")
    return value


# -- routes ------------------------------------------------------------------------------------


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset_of(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        raise ValueError("Invalid page token.") from None


def routes(state: SandboxState) -> list[BaseRoute]:
    def store() -> dict[str, Any]:
        data = state.store(IDENTIFIER)
        data.setdefault("accounts", {})
        data.setdefault("properties", {})
        return data

    async def account_summaries(request: Request) -> Response:
        token = authorize(state, request, SCOPES)
        if isinstance(token, Response):
            return token
        data = store()
        summaries: dict[str, dict[str, Any]] = {}
        for property_id, prop in sorted(data["properties"].items()):
            if token.client_email not in prop["viewers"]:
                continue
            account = prop["account"]
            summary = summaries.setdefault(
                account,
                {
                    "name": f"accountSummaries/{account}",
                    "account": f"accounts/{account}",
                    "displayName": data["accounts"][account]["displayName"],
                    "propertySummaries": [],
                },
            )
            summary["propertySummaries"].append(
                {
                    "property": f"properties/{property_id}",
                    "displayName": prop["displayName"],
                    "propertyType": "PROPERTY_TYPE_ORDINARY",
                    "parent": f"accounts/{account}",
                }
            )
        try:
            page_size = min(200, int(request.query_params.get("pageSize", 50)) or 50)
            offset = (
                _offset_of(request.query_params["pageToken"])
                if (request.query_params.get("pageToken"))
                else 0
            )
        except ValueError as exc:
            return _error(400, str(exc))
        listed = list(summaries.values())
        body: dict[str, Any] = {"accountSummaries": listed[offset : offset + page_size]}
        if offset + page_size < len(listed):
            body["nextPageToken"] = _page_token(offset + page_size)
        return JSONResponse(body)

    async def run_report(request: Request) -> Response:
        token = authorize(state, request, SCOPES)
        if isinstance(token, Response):
            return token
        property_id = request.path_params["property_id"]
        prop = store()["properties"].get(property_id)
        if prop is None or token.client_email not in prop["viewers"]:
            return _no_access()
        try:
            body = await request.json()
            limit = _int_param(body, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
            offset = _int_param(body, "offset", 0)
            if limit > MAX_LIMIT:
                raise ValueError(f"limit must be at most {MAX_LIMIT}.")
            report = build_report(prop, property_id, body)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, str(exc) or "Invalid request.")
        page = report["rows"][offset : offset + limit]
        refused = _spend(prop, 1 + len(page) // 5000)
        if refused is not None:
            return refused
        response: dict[str, Any] = {
            "dimensionHeaders": [{"name": n} for n in report["dimensions"]],
            "metricHeaders": [{"name": m, "type": METRIC_TYPES[m]} for m in report["metrics"]],
            "metadata": {"currencyCode": "USD", "timeZone": "Etc/UTC"},
            "kind": "analyticsData#runReport",
        }
        if page:
            response["rows"] = [
                {
                    "dimensionValues": [{"value": v} for v in dims],
                    "metricValues": [{"value": v} for v in values],
                }
                for dims, values in page
            ]
        if report["rows"]:
            response["rowCount"] = len(report["rows"])
        if body.get("returnPropertyQuota"):
            response["propertyQuota"] = _quota(prop)
        return JSONResponse(response)

    async def seed(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        allowed = {
            "property_id", "account_id", "account_name", "display_name",
            "viewers", "pages", "daily_tokens", "hourly_tokens",
        }  # fmt: skip
        unknown = set(body) - allowed
        if unknown:
            return JSONResponse({"error": f"unknown keys: {sorted(unknown)}"}, status_code=400)
        property_id = seed_property(state, **body)
        return JSONResponse({"property": f"properties/{property_id}"}, status_code=201)

    return [
        Route("/v1beta/accountSummaries", account_summaries, methods=["GET"]),
        Route("/v1beta/properties/{property_id}:runReport", run_report, methods=["POST"]),
        Route("/_sandbox/properties", seed, methods=["POST"]),
    ]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    return api_error_response(kind, status, retry_after, service=SERVICE)
