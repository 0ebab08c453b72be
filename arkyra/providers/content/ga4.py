"""Google Analytics 4 (reference sections 0 and 4): reports from the Data API as typed DataFrames.

The check lists the Admin API's account summaries (every property the service account can read)
and names the account. ``run_report`` pages with ``limit``/``offset`` until ``rowCount`` (or an
explicit ``max_rows``), asks for ``returnPropertyQuota`` and reports the quota back. Values come
as strings; they are converted by ``metricHeaders`` types (``TYPE_INTEGER`` -> ``Int64``, every
other numeric type -> ``float64``) and date dimensions (``date``, ``dateHour``, ...) are parsed.

The Data and Admin APIs live on two hosts. With an override or the sandbox, one base URL serves
both; otherwise the Admin host is Google's real one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from arkyra.errors import InvalidCredentials, InvalidInput
from arkyra.http.paginate import CursorPaginator, OffsetPaginator
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    NoInput,
    expose,
    third_party,
)
from arkyra.providers.content.google_auth import (
    ANALYTICS_READONLY,
    SERVICE_ACCOUNT_FIELD,
    GoogleServiceAccountProvider,
)
from arkyra.providers.content.items import AnalyticsContent, ContentItem

DATA_API_URL = "https://analyticsdata.googleapis.com"
ADMIN_API_URL = "https://analyticsadmin.googleapis.com"
MAX_PAGE_SIZE = 250_000

INTEGER_TYPES = frozenset({"TYPE_INTEGER"})
# Dimensions whose values are dates/times in a fixed compact format.
DATE_DIMENSIONS: dict[str, str] = {
    "date": "%Y%m%d",
    "firstSessionDate": "%Y%m%d",
    "dateHour": "%Y%m%d%H",
    "dateHourMinute": "%Y%m%d%H%M",
}
_DATE_TEXT = re.compile(r"^(\d{4}-\d{2}-\d{2}|today|yesterday|\d+daysAgo)$")


# -- input models ------------------------------------------------------------------------------


class DateRange(BaseModel):
    """``YYYY-MM-DD``, ``today``, ``yesterday`` or ``NdaysAgo``."""

    model_config = ConfigDict(extra="forbid")

    start_date: str = "28daysAgo"
    end_date: str = "yesterday"
    name: str | None = None

    @field_validator("start_date", "end_date")
    @classmethod
    def _date_text(cls, value: str) -> str:
        if not _DATE_TEXT.match(value):
            raise ValueError("use YYYY-MM-DD, today, yesterday or NdaysAgo")
        return value


class RunReportInput(ExposedInput):
    property_id: str | None = Field(
        default=None, description="Overrides the connected property (digits or properties/N)."
    )
    date_ranges: list[DateRange] = Field(
        default_factory=lambda: [DateRange()], min_length=1, max_length=4
    )
    dimensions: list[str] = Field(default_factory=list, max_length=9)
    metrics: list[str] = Field(min_length=1, max_length=10)
    dimension_filter: dict[str, Any] | None = Field(
        default=None, description="A GA4 FilterExpression on dimensions."
    )
    metric_filter: dict[str, Any] | None = Field(
        default=None, description="A GA4 FilterExpression on metrics."
    )
    order_bys: list[dict[str, Any]] | None = None
    limit: int = Field(default=10_000, ge=1, le=MAX_PAGE_SIZE, description="Rows per page.")
    offset: int = Field(default=0, ge=0, description="First row to read.")
    max_rows: int | None = Field(
        default=None, ge=1, description="Stop after this many rows (default: every row)."
    )
    keep_empty_rows: bool = False


# -- results -----------------------------------------------------------------------------------


@dataclass
class Ga4Report:
    """A whole report: the typed frame, ``rowCount``, the property quota and the pages read."""

    property_id: str
    frame: pd.DataFrame
    row_count: int
    property_quota: dict[str, Any] | None
    metadata: dict[str, Any] = field(default_factory=dict)
    metric_types: dict[str, str] = field(default_factory=dict)
    pages: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (dates as ISO text, missing values as null)."""
        records = json.loads(self.frame.to_json(orient="records", date_format="iso"))
        return {
            "property_id": self.property_id,
            "columns": list(self.frame.columns),
            "rows": records,
            "row_count": self.row_count,
            "property_quota": self.property_quota,
            "metadata": self.metadata,
            "pages": self.pages,
        }


@dataclass(frozen=True)
class Ga4Content(AnalyticsContent):
    """What ``send_data`` returns: the summary item and table, plus the full report."""

    report: Ga4Report | None = None


def report_frame(
    dimension_headers: list[dict[str, Any]],
    metric_headers: list[dict[str, Any]],
    rows: list[dict[str, Any]],
) -> pd.DataFrame:
    """The report as a DataFrame typed by the headers."""
    columns: dict[str, pd.Series] = {}
    for i, header in enumerate(dimension_headers):
        name = header["name"]
        values = [_cell(row.get("dimensionValues"), i) for row in rows]
        fmt = DATE_DIMENSIONS.get(name)
        if fmt:
            columns[name] = pd.to_datetime(
                pd.Series(values, dtype=object), format=fmt, errors="coerce"
            )
        else:
            columns[name] = pd.Series(values, dtype="string")
    for i, header in enumerate(metric_headers):
        name = header["name"]
        raw = pd.Series([_cell(row.get("metricValues"), i) for row in rows], dtype=object)
        numbers = pd.to_numeric(raw, errors="coerce")
        if header.get("type") in INTEGER_TYPES:
            columns[name] = numbers.round().astype("Int64")
        else:
            columns[name] = numbers.astype("float64")
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def _typed_page(answer: dict[str, Any]) -> dict[str, Any]:
    """The page with its JSON ``rows`` replaced by their typed ``frame``.

    Row objects take roughly fifteen times the memory of their typed frame, so each page is
    typed as it arrives and its rows are dropped: a long report never holds all its JSON at once.
    """
    page = {k: v for k, v in answer.items() if k != "rows"}
    page["frame"] = report_frame(
        answer.get("dimensionHeaders") or [],
        answer.get("metricHeaders") or [],
        answer.get("rows") or [],
    )
    return page


def _join_pages(
    parts: list[pd.DataFrame],
    dimension_headers: list[dict[str, Any]],
    metric_headers: list[dict[str, Any]],
) -> pd.DataFrame:
    """The typed pages as one frame with a fresh ``RangeIndex``."""
    filled = [part for part in parts if len(part)]
    if not filled:
        return report_frame(dimension_headers, metric_headers, [])
    if len(filled) == 1:
        return filled[0].reset_index(drop=True)
    return pd.concat(filled, ignore_index=True)


def _cell(values: list[dict[str, Any]] | None, index: int) -> str | None:
    if not values or index >= len(values):
        return None
    return values[index].get("value")


def totals(report: Ga4Report) -> dict[str, float | int]:
    """Sums for counts and money; means for rates, ratios and durations."""
    out: dict[str, float | int] = {}
    for name, kind in report.metric_types.items():
        column = report.frame[name].dropna()
        if column.empty:
            continue
        if kind in INTEGER_TYPES:
            out[name] = int(column.sum())
        elif kind == "TYPE_CURRENCY":
            out[name] = round(float(column.sum()), 2)
        else:
            out[name] = round(float(column.mean()), 6)
    return out


# -- the provider ------------------------------------------------------------------------------


@third_party(
    identifier="ga4",
    title="Google Analytics 4",
    description=(
        "GA4 reports (dimensions, metrics, date ranges, filters) as typed tables and a summary "
        "item, read with a service account added as a Viewer on the property."
    ),
    category="content",
    fields=[
        CredentialField(
            SERVICE_ACCOUNT_FIELD,
            "Service account key (JSON)",
            "json",
            help=(
                "A Google Cloud service account key with the Analytics Data and Admin APIs "
                "enabled; add its email as a Viewer in the property's access management."
            ),
        ),
        CredentialField(
            "property_id",
            "GA4 property ID",
            "text",
            required=False,
            help=(
                "Optional: the numeric property id (Admin > Property settings). Reports use it "
                "when a call names no property; when set, the check confirms access to it."
            ),
        ),
    ],
)
class Ga4Provider(GoogleServiceAccountProvider):
    """GA4 Data API reports and Admin API account summaries (read-only scope)."""

    default_base_url = DATA_API_URL
    scopes: ClassVar[tuple[str, ...]] = (ANALYTICS_READONLY,)

    @property
    def admin_base_url(self) -> str:
        """Google's Admin host, unless an override or the sandbox serves both APIs."""
        return ADMIN_API_URL if self.base_url == DATA_API_URL else self.base_url

    def sharing_hint(self, client_email: str, status_name: str) -> str | None:
        if status_name == "PERMISSION_DENIED":
            return (
                f"add {client_email} as a Viewer in the GA4 property "
                "(Admin > Property access management)"
            )
        return None

    # -- the contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """List account summaries; identity = the account (holding the property, if set)."""
        account = self.service_account(credentials)
        summaries = await self._account_summaries(credentials)
        wanted = credentials.get("property_id")
        hint = self.sharing_hint(account.client_email, "PERMISSION_DENIED")
        if not summaries:
            raise InvalidCredentials(
                f"the service account can read no GA4 property ({hint})", provider=self.identifier
            )
        chosen = summaries[0]
        if wanted:
            name = f"properties/{normalise_property_id(wanted)}"
            chosen = next(
                (
                    s
                    for s in summaries
                    if any(p.get("property") == name for p in s.get("propertySummaries") or [])
                ),
                None,
            )
            if chosen is None:
                raise InvalidCredentials(
                    f"the service account cannot read {name} ({hint})", provider=self.identifier
                )
        return AccountInfo(
            id=str(chosen.get("account") or chosen.get("name")),
            name=credentials.get("label") or str(chosen.get("displayName") or chosen["account"]),
        )

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> Ga4Content:
        """Run a report (``data``: RunReportInput fields, or None for a default daily report)."""
        payload = dict(data or {}) if isinstance(data, Mapping) or data is None else None
        if payload is None:
            raise InvalidInput("ga4 send_data takes a dict of run_report options, or None")
        payload.setdefault("dimensions", ["date"])
        payload.setdefault("metrics", ["activeUsers", "sessions", "screenPageViews"])
        try:
            params = RunReportInput.model_validate(payload)
        except ValueError as exc:
            raise InvalidInput(f"invalid ga4 report options: {exc}") from None
        report = await self.run_report(credentials, params)
        return Ga4Content(item=summary_item(report, params), frame=report.frame, report=report)

    # -- exposed functions ---------------------------------------------------------------------

    @expose
    async def account_summaries(
        self, credentials: Mapping[str, str], params: NoInput
    ) -> list[dict[str, str]]:
        """Every property the service account can read, with its account."""
        return [
            {
                "account": str(summary.get("account", "")),
                "account_name": str(summary.get("displayName", "")),
                "property": str(prop.get("property", "")),
                "property_name": str(prop.get("displayName", "")),
                "property_type": str(prop.get("propertyType", "")),
            }
            for summary in await self._account_summaries(credentials)
            for prop in summary.get("propertySummaries") or []
        ]

    @expose
    async def run_report(self, credentials: Mapping[str, str], params: RunReportInput) -> Ga4Report:
        """runReport over every page (offset pagination to rowCount), typed by metricHeaders."""
        property_id = normalise_property_id(params.property_id or credentials.get("property_id"))
        page_size = min(params.limit, params.max_rows or params.limit)
        body = report_body(params)
        path = f"/v1beta/properties/{property_id}:runReport"

        async def fetch(paging: dict[str, Any]) -> Any:
            page = {
                **body,
                "offset": str(params.offset + paging["offset"]),
                "limit": str(paging["limit"]),
            }
            answer = await self.google_json(
                "POST", path, credentials, json_body=page, idempotent=True
            )
            return _typed_page(answer)

        paginator = OffsetPaginator(
            limit=page_size,
            items=lambda b: b["frame"].index,
            total=lambda b: max(0, int(b.get("rowCount") or 0) - params.offset),
            max_items=params.max_rows,  # no page past max_rows; the last asks only for the rest
        )
        first: dict[str, Any] | None = None
        last: dict[str, Any] = {}
        parts: list[pd.DataFrame] = []
        taken = 0
        pages = 0
        async for page in paginator.pages(fetch):
            first = first or page
            last = page
            pages += 1
            part = page["frame"]
            if params.max_rows is not None:  # in case a page holds more than was asked for
                part = part.iloc[: params.max_rows - taken]
            parts.append(part)
            taken += len(part)
        first = first or {}
        metric_headers = first.get("metricHeaders") or []
        frame = _join_pages(parts, first.get("dimensionHeaders") or [], metric_headers)
        frame.attrs["property_id"] = property_id
        return Ga4Report(
            property_id=property_id,
            frame=frame,
            row_count=int(first.get("rowCount") or 0),
            property_quota=last.get("propertyQuota"),
            metadata=first.get("metadata") or {},
            metric_types={h["name"]: h.get("type", "") for h in metric_headers},
            pages=pages,
        )

    # -- helpers -------------------------------------------------------------------------------

    async def _account_summaries(self, credentials: Mapping[str, str]) -> list[dict[str, Any]]:
        url = f"{self.admin_base_url}/v1beta/accountSummaries"

        async def fetch(cursor: dict[str, Any]) -> Any:
            query = {"pageSize": 200, **cursor}
            return await self.google_json("GET", url, credentials, params=query)

        paginator = CursorPaginator(
            cursor_param="pageToken",
            next_cursor=lambda b: b.get("nextPageToken"),
            items=lambda b: b.get("accountSummaries") or [],
        )
        return await paginator.collect(fetch)


def normalise_property_id(raw: str | None) -> str:
    """``123`` from ``123`` or ``properties/123``; ``InvalidInput`` when absent or malformed."""
    text = (raw or "").strip().removeprefix("properties/")
    if not text:
        raise InvalidInput("ga4 needs a property id", {"property_id": "is required"})
    if not text.isdigit():
        raise InvalidInput(
            f"not a GA4 property id: {text!r}", {"property_id": "expected digits, e.g. 123456789"}
        )
    return text


def report_body(params: RunReportInput) -> dict[str, Any]:
    """The runReport body (without paging) in the API's camelCase."""
    body: dict[str, Any] = {
        "dateRanges": [
            {
                "startDate": r.start_date,
                "endDate": r.end_date,
                **({"name": r.name} if r.name else {}),
            }
            for r in params.date_ranges
        ],
        "dimensions": [{"name": name} for name in params.dimensions],
        "metrics": [{"name": name} for name in params.metrics],
        "returnPropertyQuota": True,
    }
    if params.dimension_filter:
        body["dimensionFilter"] = params.dimension_filter
    if params.metric_filter:
        body["metricFilter"] = params.metric_filter
    if params.order_bys:
        body["orderBys"] = params.order_bys
    if params.keep_empty_rows:
        body["keepEmptyRows"] = True
    return body


def summary_item(report: Ga4Report, params: RunReportInput) -> ContentItem:
    """One ContentItem describing the report: its ranges, row count and metric totals."""
    spans = ", ".join(f"{r.start_date} to {r.end_date}" for r in params.date_ranges)
    sums = totals(report)
    lines = [f"Rows: {report.row_count}", *(f"{k}: {v}" for k, v in sums.items())]
    digest = hashlib.sha256(json.dumps(report_body(params), sort_keys=True).encode()).hexdigest()[
        :12
    ]
    return ContentItem(
        source="ga4",
        id=f"ga4:{report.property_id}:{digest}",
        title=f"GA4 property {report.property_id}: {spans}",
        body="\n".join(lines),
        fields={
            "property_id": report.property_id,
            "date_ranges": [r.model_dump() for r in params.date_ranges],
            "dimensions": list(params.dimensions),
            "metrics": list(params.metrics),
            "row_count": report.row_count,
            "totals": sums,
            "property_quota": report.property_quota,
        },
    )
