"""PostHog as a content source: HogQL queries and event listings, as typed rows and DataFrames.

Contract: ``reference/provider-contracts-content-ai.md`` section 6.

- Reads need a **personal** API key (``phx_...``, ``Authorization: Bearer``). A project key
  (``phc_...``) is public and write-only, so it is refused before any call with a message that
  says so.
- The user's ``host`` picks the instance (US or EU cloud, or a self-hosted https URL). A base-URL
  override in settings, or sandbox mode, takes precedence so tests and the demo never leave home.
- ``POST /api/projects/{id}/query/`` answers 200 with rows, or 202 with a ``query_status`` that we
  poll at ``GET .../query/{query_id}/`` (202 pending, 200 complete, 400 failed) under a deadline.

Query budget (per personal key; PostHog ``rate_limit.py``). A 429 carries ``Retry-After`` and
becomes :class:`~arkyra.errors.RateLimited`; the same-provider retry waits only while the wait
fits under ``retry_after_max_seconds``, otherwise the caller gets the error with ``retry_after``.

- ``/query/`` with ``HogQLQuery``: **120 per hour** by default (teams with the API-queries
  feature get 240/min and 2400/h). Plan for 120/h: one HogQL call per pipeline run, not per item.
- ClickHouse-backed endpoints (events list, query status polls): 240/min and 1200/h.
- Everything else: 480/min and 4800/h.

Because of that budget a query POST is not repeated after a 5xx (a re-run spends budget and a
timed-out query usually times out again); it is repeated only after a 429 or when the request
certainly never left.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
    UnsafeURL,
)
from arkyra.http import ssrf
from arkyra.http.paginate import CursorPaginator
from arkyra.http.ssrf import LOCAL_SUFFIXES, METADATA_NAMES, forbidden_reason, parse_host
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    ThirdPartyProvider,
    expose,
    third_party,
)
from arkyra.providers.content.items import AnalyticsContent, ContentItem
from arkyra.providers.jobs import JobStatus, RenderJob, poll_job

IDENTIFIER = "posthog"
US_HOST = "https://us.posthog.com"
EU_HOST = "https://eu.posthog.com"

#: Shorthands and hosts people paste that are not the private API host.
HOST_ALIASES: dict[str, str] = {
    "us": US_HOST,
    "eu": EU_HOST,
    "https://us.i.posthog.com": US_HOST,
    "https://eu.i.posthog.com": EU_HOST,
    "https://app.posthog.com": US_HOST,
}

PROJECT_KEY_PREFIX = "phc_"
PROJECT_KEY_MESSAGE = (
    "this is a project API key (phc_...), which can only send events and cannot read data; "
    "create a personal API key (phx_...) with the query:read scope under "
    "PostHog > Settings > Personal API keys"
)

#: Longest we wait for an asynchronous query unless the caller asks for less.
QUERY_DEADLINE_SECONDS = 600.0
EVENTS_MAX_PAGES = 500

Refresh = Literal["blocking", "async", "force_blocking", "force_async"]
ColumnKind = Literal["int", "float", "bool", "datetime", "date", "string", "other"]


# -- inputs and results -----------------------------------------------------------------------


class HogQLInput(ExposedInput):
    """A HogQL (SQL) query; ``values`` fills ``{placeholders}`` safely on PostHog's side."""

    query: str = Field(min_length=1, max_length=100_000)
    values: dict[str, Any] | None = None
    refresh: Refresh = Field(
        default="blocking", description="'async' returns at once and is polled to completion."
    )
    name: str | None = Field(default=None, max_length=200, description="Tag shown in PostHog.")
    max_wait_seconds: float | None = Field(default=None, gt=0, le=3600)


class EventsInput(ExposedInput):
    """Filters for the (deprecated, still served) events list; pages follow the ``next`` link."""

    event: str | None = Field(default=None, max_length=400)
    distinct_id: str | None = Field(default=None, max_length=400)
    after: datetime | None = None
    before: datetime | None = None
    page_size: int = Field(default=100, ge=1, le=10_000)
    max_events: int = Field(default=1_000, ge=1, le=50_000)


class QueryColumn(BaseModel):
    name: str
    type: str


class QueryResult(BaseModel):
    """A HogQL answer: column names and ClickHouse types, rows converted to Python types."""

    query_id: str | None = None
    columns: list[QueryColumn]
    rows: list[dict[str, Any]]
    has_more: bool = False

    def to_dataframe(self) -> pd.DataFrame:
        """The rows as a DataFrame whose dtypes follow the ClickHouse column types."""
        names = [c.name for c in self.columns]
        frame = pd.DataFrame.from_records(self.rows, columns=names)
        for column in self.columns:
            frame[column.name] = _as_dtype(frame[column.name], column_kind(column.type))
        return frame


class PostHogEvent(BaseModel):
    id: str
    event: str
    distinct_id: str
    timestamp: datetime
    properties: dict[str, Any] = Field(default_factory=dict)


class EventsResult(BaseModel):
    events: list[PostHogEvent]
    truncated: bool = False

    def to_dataframe(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(
            [e.model_dump() for e in self.events],
            columns=["id", "event", "distinct_id", "timestamp", "properties"],
        )
        for name in ("id", "event", "distinct_id"):
            frame[name] = frame[name].astype("string")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame


PostHogData = AnalyticsContent  # the name its callers know


# -- ClickHouse types -> Python values and pandas dtypes ---------------------------------------

_WRAPPER = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")


def column_kind(clickhouse_type: str) -> ColumnKind:
    """Classify a ClickHouse type (``Nullable(DateTime64(6, 'UTC'))`` -> ``datetime``)."""
    name = (clickhouse_type or "").strip()
    while match := _WRAPPER.match(name):
        name = match.group(1).strip()
    if re.match(r"^U?Int\d+$", name):
        return "int"
    if name.startswith(("Float", "Decimal")):
        return "float"
    if name in ("Bool", "Boolean"):
        return "bool"
    if name.startswith("DateTime"):
        return "datetime"
    if name in ("Date", "Date32"):
        return "date"
    if name in ("String", "UUID") or name.startswith(("FixedString", "Enum")):
        return "string"
    return "other"


def typed_value(value: Any, kind: ColumnKind) -> Any:
    """One cell as the Python type its column promises (``None`` stays ``None``)."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true")
    if kind == "datetime":
        return _parse_datetime(value)
    if kind == "date":
        return date.fromisoformat(str(value)[:10])
    if kind == "string":
        return str(value)
    return value


def _parse_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _as_dtype(series: pd.Series, kind: ColumnKind) -> pd.Series:
    """Cast a column to the dtype for its kind; values that do not fit stay as objects."""
    try:
        if kind == "int":
            return series.astype("Int64")
        if kind == "float":
            return series.astype("Float64")
        if kind == "bool":
            return series.astype("boolean")
        if kind == "datetime":
            return pd.to_datetime(series, utc=True)
        if kind == "date":
            return pd.to_datetime(series)
        if kind == "string":
            return series.astype("string")
    except (OverflowError, TypeError, ValueError):
        pass
    return series.astype(object)


def _unique_names(names: list[str]) -> list[str]:
    """HogQL may return two columns called ``count()``; keep both, distinctly named."""
    seen: dict[str, int] = {}
    unique: list[str] = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count}")
    return unique


def query_result(payload: Mapping[str, Any], query_id: str | None = None) -> QueryResult:
    """A :class:`QueryResult` from a HogQL body (``results``, ``columns``, ``types``)."""
    raw_columns = [str(c) for c in payload.get("columns") or []]
    raw_types = [str(t) for t in payload.get("types") or []]
    rows = payload.get("results") or []
    if not raw_columns and rows:
        raw_columns = [f"column_{i}" for i in range(len(rows[0]))]
    names = _unique_names(raw_columns)
    types = [*raw_types, *["" for _ in names]][: len(names)]
    kinds = [column_kind(t) for t in types]
    typed_rows = [
        {name: typed_value(cell, kind) for name, kind, cell in zip(names, kinds, row, strict=False)}
        for row in rows
    ]
    return QueryResult(
        query_id=query_id,
        columns=[QueryColumn(name=n, type=t) for n, t in zip(names, types, strict=True)],
        rows=typed_rows,
        has_more=bool(payload.get("hasMore")),
    )


# -- host handling -----------------------------------------------------------------------------


def normalize_host(raw: str | None, *, allow_loopback: bool = False) -> str:
    """The private-API base URL for a user's ``host``: https only, no credentials, no SSRF.

    Self-hosted instances are welcome. Literal addresses in any spelling are checked here
    (loopback, private, link-local, metadata... are refused); names of self-hosted instances are
    resolved and checked before each call by :meth:`PostHogProvider._project`.
    """
    value = (raw or "").strip().rstrip("/") or US_HOST
    value = HOST_ALIASES.get(value.lower(), value)
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise UnsafeURL("PostHog host must be an https:// URL", {"host": "must use https"})
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeURL("PostHog host must be a plain https URL", {"host": "invalid URL"})
    if parts.query or parts.fragment:
        raise UnsafeURL("PostHog host must not have a query", {"host": "remove ?... and #..."})
    host = parts.hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith((".localhost", *LOCAL_SUFFIXES)):
        raise UnsafeURL("PostHog host points at a local name", {"host": "not a public host"})
    if host in METADATA_NAMES:
        raise UnsafeURL("PostHog host points at a metadata service", {"host": "not allowed"})
    try:
        address = parse_host(host)
    except ValueError:
        raise UnsafeURL("PostHog host is not a valid address", {"host": "invalid host"}) from None
    if address is not None and (reason := forbidden_reason(address, allow_loopback=allow_loopback)):
        raise UnsafeURL(f"PostHog host is {reason}", {"host": "not a public host"})
    return f"https://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def is_cloud_host(base_url: str) -> bool:
    """PostHog's own cloud hosts need no DNS check."""
    return base_url in (US_HOST, EU_HOST)


@dataclass(frozen=True)
class _Project:
    """Where one set of credentials points: the API base URL and the numeric project id."""

    base_url: str
    project_id: str

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/projects/{self.project_id}{path}"


# -- the provider ------------------------------------------------------------------------------


@third_party(
    identifier=IDENTIFIER,
    title="PostHog",
    description="Product analytics: HogQL queries and events as tables for your pipelines.",
    category="content",
    fields=[
        CredentialField(
            "api_key",
            "Personal API key",
            "secret",
            help="A personal key (phx_...) with query:read; project keys (phc_...) cannot read.",
        ),
        CredentialField(
            "host",
            "Host",
            "text",
            required=False,
            default=US_HOST,
            help="https://us.posthog.com, https://eu.posthog.com or your self-hosted URL.",
        ),
        CredentialField("project_id", "Project ID", "text", help="The number in /project/<id>."),
    ],
)
class PostHogProvider(ThirdPartyProvider):
    """PostHog's private API with a personal key: identity, HogQL and events."""

    default_base_url = US_HOST

    # -- credentials ---------------------------------------------------------------------------

    @classmethod
    def validate_credentials(cls, credentials: Mapping[str, Any]) -> dict[str, str]:
        clean = super().validate_credentials(credentials)
        errors: dict[str, str] = {}
        if clean["api_key"].startswith(PROJECT_KEY_PREFIX):
            errors["api_key"] = PROJECT_KEY_MESSAGE
        if not clean["project_id"].isdigit():
            errors["project_id"] = "Project ID must be a number"
        try:
            clean["host"] = normalize_host(clean.get("host"))
        except InvalidInput as exc:
            errors.update(exc.errors)
        if errors:
            raise InvalidInput(f"invalid credentials for {cls.identifier}", errors)
        return clean

    async def _project(self, credentials: Mapping[str, str]) -> _Project:
        """Check the key kind, the project id and the host before any call."""
        api_key = (credentials.get("api_key") or "").strip()
        if not api_key:
            raise InvalidCredentials("a personal API key is required", provider=self.identifier)
        if api_key.startswith(PROJECT_KEY_PREFIX):
            raise InvalidCredentials(
                PROJECT_KEY_MESSAGE, provider=self.identifier, code="project_api_key"
            )
        project_id = str(credentials.get("project_id") or "").strip()
        if not project_id.isdigit():
            raise InvalidInput(
                "PostHog project ID must be a number", {"project_id": "must be a number"}
            )
        return _Project(base_url=await self._base_url_for(credentials), project_id=project_id)

    async def _base_url_for(self, credentials: Mapping[str, str]) -> str:
        """Settings override or sandbox first; otherwise the user's own host, vetted.

        A self-hosted name is resolved and refused when any address is not public (the shared
        SSRF guard), so a user cannot point our requests into the private network.
        """
        if getattr(self.settings, "posthog_base_url", None) or self.settings.sandbox:
            return self.base_url
        allow_loopback = self.settings.ssrf_allow_loopback
        base_url = normalize_host(credentials.get("host"), allow_loopback=allow_loopback)
        if not is_cloud_host(base_url):
            await ssrf.check_url(base_url, allow_loopback=allow_loopback)
        return base_url

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['api_key'].strip()}"}

    # -- errors --------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """DRF bodies ``{type, code, detail, attr}``, and query-status bodies on polls."""
        body = _json_or_none(response)
        status = response.status_code
        if isinstance(body, dict) and isinstance(body.get("query_status"), dict):
            query_status = body["query_status"]
            message = str(query_status.get("error_message") or "query failed")
            if status >= 500:
                return Transient(message, provider=self.identifier, status=status)
            return BadRequest(message, provider=self.identifier, status=status, code="query_error")
        body = body if isinstance(body, dict) else {}
        code = body.get("code")
        kind = body.get("type")
        detail = str(body.get("detail") or response.text[:300] or response.reason_phrase)
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": code}
        if status == 429 or kind == "throttled_error":
            return RateLimited(detail, retry_after=self.retry_after(response), **kw)
        if status == 402 or code == "quota_limit_exceeded":
            return QuotaExhausted(detail, **kw)
        if status == 403:
            return InvalidCredentials(
                f"{detail} (the key may lack a scope such as query:read)", **kw
            )
        if status == 512:
            return BadRequest(f"{detail} (the query would run too long; narrow it)", **kw)
        return self.error_from_status(response, message=detail, code=code)

    # -- the contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /api/users/@me/``: the key's user and organization."""
        project = await self._project(credentials)
        me = await self.get_json(f"{project.base_url}/api/users/@me/", credentials)
        organization = me.get("organization") or {}
        org_id = str(organization.get("id") or me.get("uuid") or "")
        if not org_id:
            raise Transient("answered without a user or organization id", provider=self.identifier)
        org_name = organization.get("name") or self.title
        who = me.get("email") or " ".join(
            p for p in (me.get("first_name"), me.get("last_name")) if p
        )
        name = f"{org_name} ({who})" if who else str(org_name)
        return AccountInfo(id=f"{org_id}:{project.project_id}", name=name)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> PostHogData:
        """Run a HogQL query (a string, a dict or :class:`HogQLInput`): summary item + table."""
        params = _hogql_input(data)
        result = await self.hogql(credentials, params)
        frame = result.to_dataframe()
        return PostHogData(item=self._summary(params, result, frame), frame=frame)

    # -- exposed functions ---------------------------------------------------------------------

    @expose
    async def hogql(self, credentials: Mapping[str, str], params: HogQLInput) -> QueryResult:
        """Run a HogQL query; asynchronous answers (202) are polled to completion."""
        project = await self._project(credentials)
        query: dict[str, Any] = {"kind": "HogQLQuery", "query": params.query}
        if params.values:
            query["values"] = params.values
        body: dict[str, Any] = {"query": query, "refresh": params.refresh}
        if params.name:
            body["name"] = params.name
        response = await self.request("POST", project.url("/query/"), credentials, json_body=body)
        payload = self._body(response)
        query_status = payload.get("query_status")
        if isinstance(query_status, dict) and query_status.get("complete") is False:
            deadline = params.max_wait_seconds or min(
                self.settings.job_deadline_seconds, QUERY_DEADLINE_SECONDS
            )
            query_id = str(query_status.get("id") or "")
            if not query_id:
                raise Transient("accepted a query without an id", provider=self.identifier)
            payload = await self._await_query(project, credentials, query_id, deadline)
            return query_result(payload, query_id)
        query_id = query_status.get("id") if isinstance(query_status, dict) else None
        return query_result(payload, query_id)

    @expose
    async def events(self, credentials: Mapping[str, str], params: EventsInput) -> EventsResult:
        """List events newest first, following PostHog's ``next`` links page by page.

        PostHog marks this endpoint deprecated (kept for compatibility); prefer :meth:`hogql`
        for aggregates. Stops at ``max_events`` and says so with ``truncated``.
        """
        project = await self._project(credentials)
        first_url = project.url("/events/") + "?" + urlencode(_events_query(params))

        async def fetch(cursor: dict[str, Any]) -> Any:
            url = self._same_origin(project, cursor.get("next") or first_url)
            return await self.get_json(url, credentials)

        paginator = CursorPaginator(
            cursor_param="next",
            next_cursor=lambda body: body.get("next"),
            items=lambda body: body.get("results") or [],
            max_pages=EVENTS_MAX_PAGES,
        )
        events: list[PostHogEvent] = []
        truncated = False
        async for raw in paginator.items(fetch):
            if len(events) >= params.max_events:
                truncated = True
                break
            events.append(_event(raw))
        return EventsResult(events=events, truncated=truncated)

    # -- helpers -------------------------------------------------------------------------------

    async def _await_query(
        self, project: _Project, credentials: Mapping[str, str], query_id: str, deadline: float
    ) -> dict[str, Any]:
        """Poll ``GET .../query/{id}/`` until complete; return the finished query's response."""
        url = project.url(f"/query/{quote(query_id, safe='')}/")

        async def fetch() -> RenderJob:
            body = self._body(await self.request("GET", url, credentials))
            status = body.get("query_status") or {}
            if status.get("error"):
                state, vendor = JobStatus.FAILED, "error"
            elif status.get("complete"):
                state, vendor = JobStatus.SUCCEEDED, "complete"
            else:
                state, vendor = JobStatus.RUNNING, "running"
            return RenderJob(
                provider=self.identifier,
                id=query_id,
                status=state,
                vendor_status=vendor,
                failure_reason=status.get("error_message") or None,
                raw=status,
            )

        job = await poll_job(
            fetch,
            initial_delay=self.settings.job_poll_initial_seconds,
            max_delay=self.settings.job_poll_max_seconds,
            deadline_seconds=deadline,
        )
        results = job.raw.get("results")
        return results if isinstance(results, dict) else dict(job.raw)

    def _same_origin(self, project: _Project, url: str) -> str:
        """Follow a ``next`` link only on our own base URL and only to the events list.

        The link's host is ignored (a proxied self-host may report an internal name); its path
        and query are re-rooted on the configured base, so a body can never redirect us.
        """
        parts = urlsplit(url)
        if not parts.path.endswith(f"/api/projects/{project.project_id}/events/"):
            raise Transient("gave a next link outside the events list", provider=self.identifier)
        return project.url("/events/") + (f"?{parts.query}" if parts.query else "")

    def _body(self, response: httpx.Response) -> dict[str, Any]:
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise Transient(
                "answered with a body that is not a JSON object",
                provider=self.identifier,
                status=response.status_code,
            )
        return body

    def _summary(self, params: HogQLInput, result: QueryResult, frame: pd.DataFrame) -> ContentItem:
        columns = ", ".join(f"{c.name} ({c.type or '?'})" for c in result.columns)
        preview = frame.head(5).to_string(index=False) if len(frame) else "(no rows)"
        digest = hashlib.sha256(params.query.encode()).hexdigest()[:16]
        return ContentItem(
            source=self.identifier,
            id=result.query_id or f"hogql-{digest}",
            title=params.name or "PostHog HogQL query",
            body=f"{len(frame)} rows; columns: {columns}\n\n{preview}",
            fields={
                "query": params.query,
                "row_count": len(frame),
                "columns": [c.model_dump() for c in result.columns],
                "has_more": result.has_more,
            },
            updated_at=datetime.now(UTC),
        )


def _hogql_input(data: Any) -> HogQLInput:
    if isinstance(data, HogQLInput):
        return data
    payload = {"query": data} if isinstance(data, str) else data
    try:
        return HogQLInput.model_validate(payload)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid input for posthog.send_data", errors) from None


def _events_query(params: EventsInput) -> dict[str, str]:
    query: dict[str, str] = {"limit": str(params.page_size)}
    if params.event:
        query["event"] = params.event
    if params.distinct_id:
        query["distinct_id"] = params.distinct_id
    if params.after:
        query["after"] = params.after.isoformat()
    if params.before:
        query["before"] = params.before.isoformat()
    return query


def _event(raw: Mapping[str, Any]) -> PostHogEvent:
    return PostHogEvent(
        id=str(raw.get("id") or raw.get("uuid") or ""),
        event=str(raw.get("event") or ""),
        distinct_id=str(raw.get("distinct_id") or ""),
        timestamp=_parse_datetime(raw.get("timestamp")),
        properties=raw.get("properties") or {},
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
