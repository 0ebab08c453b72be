"""Airtable: bases, table schemas and records as typed records, DataFrames and content items.

Follows ``reference/provider-contracts-content-ai.md`` section 3. Airtable allows 5 requests per
second per base and 50 per second across all bases for one token (PAT user or service account).
Every request here first takes one slot that fits both sliding-window limiters (shared by all
provider instances in the process): the per-base one keyed by base id, the per-token one keyed by
a keyed fingerprint of the token (never the token itself). So a long pagination, or many bases
read at once, never trips a limit. A 429 asks for a 30 second wait, which :class:`RateLimited`
carries. ``max_records`` (Airtable's ``maxRecords``) stops the listing once that many are in hand.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.http.paginate import CursorPaginator
from arkyra.http.retry import call_with_retries
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    NoInput,
    ThirdPartyProvider,
    api_key_field,
    expose,
    third_party,
)
from arkyra.providers.content.items import ContentItem

REQUESTS_PER_SECOND_PER_BASE = 5
REQUESTS_PER_SECOND_PER_TOKEN = 50
RATE_LIMIT_WAIT_SECONDS = 30.0
PAGE_SIZE = 100
LONG_QUERY_CHARS = 4000  # beyond this, list records with POST .../listRecords instead of GET
META_KEY = "meta"  # limiter key for requests that are not about one base
ACCESS_HINT = "check the base id and table name, and that the token has access to the base"

NUMBER_TYPES = frozenset(
    {"number", "percent", "currency", "rating", "duration", "count", "autoNumber"}
)
DATETIME_TYPES = frozenset({"date", "dateTime", "createdTime", "lastModifiedTime"})
TEXT_TYPES = frozenset(
    {"singleLineText", "multilineText", "richText", "email", "url", "phoneNumber", "singleSelect"}
)
BODY_TYPES = ("richText", "multilineText")
TRANSIENT_TYPES = frozenset({"SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})


# -- rate limiting ----------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most ``rate`` grants per ``per`` seconds for each key, in any window.

    A slot is reserved under a short thread lock (no awaiting inside it), then the caller
    sleeps until its slot: fair (first come, first served), safe across event loops, and
    testable with a fake ``clock`` and ``sleep``.
    """

    def __init__(
        self,
        rate: int,
        per: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be >= 1 and per > 0")
        self.rate = rate
        self.per = per
        self.clock = clock
        self.sleep = sleep
        self._grants: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str) -> float:
        """Book the earliest slot for ``key``; returns how long to wait for it."""
        return reserve_together([(self, key)])

    async def acquire(self, key: str) -> None:
        """Wait until a request for ``key`` may be sent."""
        delay = self.reserve(key)
        if delay > 0:
            await self.sleep(delay)

    def keys(self) -> list[str]:
        """The keys that have grants on the books (for diagnostics and tests)."""
        with self._lock:
            return list(self._grants)

    def _earliest_delay(self, key: str, now: float) -> float:
        """How long from ``now`` until ``key`` may have another grant (lock held)."""
        grants = self._grants.setdefault(key, deque())
        while grants and grants[0] <= now - self.per:
            grants.popleft()
        slot = now
        if len(grants) >= self.rate:
            slot = max(slot, grants[-self.rate] + self.per)
        if grants:
            slot = max(slot, grants[-1])
        return slot - now


def reserve_together(claims: Sequence[tuple[SlidingWindowLimiter, str]]) -> float:
    """Book one slot that fits every ``(limiter, key)`` at once; returns how long to wait.

    Booking each limiter in turn would let a request go out later than a slot it booked (it was
    waiting on another limiter), which can put one request too many in a window; a single
    common slot cannot. The limiters must share a clock; locks are taken in a fixed order.
    """
    limiters = sorted({id(limiter): limiter for limiter, _ in claims}.values(), key=id)
    clock = limiters[0].clock
    if any(limiter.clock is not clock for limiter in limiters):
        raise ValueError("limiters booked together must share one clock")
    with ExitStack() as locks:
        for limiter in limiters:
            locks.enter_context(limiter._lock)
        now = clock()
        slot = now + max(limiter._earliest_delay(key, now) for limiter, key in claims)
        for limiter, key in claims:
            limiter._grants[key].append(slot)
        return slot - now


async def acquire_together(claims: Sequence[tuple[SlidingWindowLimiter, str]]) -> None:
    """Wait until a request that counts against every ``(limiter, key)`` may be sent."""
    delay = reserve_together(claims)
    if delay > 0:
        await claims[0][0].sleep(delay)


#: 5 per 1.1 s rather than per 1.0 s: a 429 costs Airtable's 30 s penalty, so a 10 % margin that
#: absorbs network jitter is far cheaper than the occasional refusal it prevents.
BASE_LIMITER = SlidingWindowLimiter(REQUESTS_PER_SECOND_PER_BASE, 1.1)
#: 50 per 1.1 s per token, across all its bases (same margin).
TOKEN_LIMITER = SlidingWindowLimiter(REQUESTS_PER_SECOND_PER_TOKEN, 1.1)


# -- models -----------------------------------------------------------------------------------


class AirtableRecord(BaseModel):
    """One record: ``fields`` holds only non-empty cells (Airtable omits empty ones)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    created_time: datetime = Field(alias="createdTime")
    fields: dict[str, Any] = Field(default_factory=dict)


class SortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1)
    direction: Literal["asc", "desc"] = "asc"


class BaseInput(ExposedInput):
    base_id: str = Field(min_length=1, description="The base id (app...).")


class ListRecordsInput(ExposedInput):
    base_id: str = Field(min_length=1, description="The base id (app...).")
    table: str = Field(min_length=1, description="Table id (tbl...) or name.")
    view: str | None = None
    filter_by_formula: str | None = None
    fields: list[str] | None = Field(default=None, description="Only these fields.")
    sort: list[SortSpec] | None = None
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)
    max_records: int | None = Field(default=None, ge=1)
    cell_format: Literal["json", "string"] | None = None
    time_zone: str | None = None
    user_locale: str | None = None
    return_fields_by_field_id: bool = False

    def effective_page_size(self) -> int:
        """``page_size``, but no larger than ``max_records``: ask only for what is wanted."""
        return min(self.page_size, self.max_records or self.page_size)

    def query(self) -> dict[str, Any]:
        """Query parameters for ``GET /v0/{base}/{table}`` (repeated ``fields[]``, ``sort[i]``)."""
        params: dict[str, Any] = {"pageSize": self.effective_page_size()}
        for key, value in self._scalars().items():
            params[key] = value
        if self.fields:
            params["fields[]"] = list(self.fields)
        for i, spec in enumerate(self.sort or []):
            params[f"sort[{i}][field]"] = spec.field
            params[f"sort[{i}][direction]"] = spec.direction
        return params

    def body(self) -> dict[str, Any]:
        """The same parameters as a JSON body for ``POST .../listRecords``."""
        body: dict[str, Any] = {"pageSize": self.effective_page_size(), **self._scalars()}
        if self.return_fields_by_field_id:
            body["returnFieldsByFieldId"] = True
        if self.fields:
            body["fields"] = list(self.fields)
        if self.sort:
            body["sort"] = [s.model_dump() for s in self.sort]
        return body

    def _scalars(self) -> dict[str, Any]:
        named = {
            "view": self.view,
            "filterByFormula": self.filter_by_formula,
            "maxRecords": self.max_records,
            "cellFormat": self.cell_format,
            "timeZone": self.time_zone,
            "userLocale": self.user_locale,
        }
        return {k: v for k, v in named.items() if v is not None}

    def is_long(self) -> bool:
        return len(urlencode(self.query(), doseq=True)) > LONG_QUERY_CHARS


class AirtableFetch(ListRecordsInput):
    """``send_data``'s input: which records, and which fields make the title and body."""

    title_field: str | None = Field(default=None, description="Default: the primary field.")
    body_field: str | None = Field(default=None, description="Default: first long-text field.")

    def list_input(self) -> ListRecordsInput:
        return ListRecordsInput.model_validate(
            self.model_dump(exclude={"title_field", "body_field"})
        )


def parse_fetch(data: Any) -> AirtableFetch:
    """An ``AirtableFetch`` from a mapping or from ``"appXXX/tblYYY"`` (base/table)."""
    if isinstance(data, AirtableFetch):
        return data
    if isinstance(data, str):
        base_id, _, table = data.partition("/")
        data = {"base_id": base_id, "table": table}
    try:
        return AirtableFetch.model_validate(data)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "data": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid airtable fetch request", errors) from None


# -- the provider -----------------------------------------------------------------------------


@third_party(
    identifier="airtable",
    title="Airtable",
    description="Records from Airtable bases, typed by the table schema.",
    category="content",
    fields=[
        api_key_field(
            "Personal access token",
            help="A pat... token with data.records:read and schema.bases:read.",
        )
    ],
)
class AirtableProvider(ThirdPartyProvider):
    default_base_url = "https://api.airtable.com"
    rate_limiter: SlidingWindowLimiter = BASE_LIMITER  # keyed by base id
    token_limiter: SlidingWindowLimiter = TOKEN_LIMITER  # keyed by the token's fingerprint

    # -- edge ------------------------------------------------------------------------------

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        api_key = credentials.get("api_key")
        if not api_key:
            raise InvalidCredentials("the api_key credential is missing", provider=self.identifier)
        return {"Authorization": f"Bearer {api_key}"}

    def retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After when sent, else Airtable's documented 30 second wait."""
        parsed = super().retry_after(response)
        return RATE_LIMIT_WAIT_SECONDS if parsed is None else parsed

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map ``{error:{type,message}}`` (or ``{error:"TYPE"}``) by type, then by status."""
        kind, message = _error_parts(response)
        status = response.status_code
        kw: dict[str, Any] = {"provider": self.identifier, "status": status, "code": kind}
        if kind == "PUBLIC_API_BILLING_LIMIT_EXCEEDED":
            return QuotaExhausted(message, **kw)
        if status == 429 or kind == "RATE_LIMIT_REACHED":
            return RateLimited(message, retry_after=self.retry_after(response), **kw)
        if kind == "AUTHENTICATION_REQUIRED" or (kind or "").startswith("INVALID_PERMISSIONS"):
            return InvalidCredentials(message, **kw)
        if kind and (kind.endswith("NOT_FOUND") or status == 404):
            return BadRequest(f"{message}; {ACCESS_HINT}", **kw)
        if kind and (kind.startswith("INVALID_") or kind.startswith("UNKNOWN_") or status == 422):
            return BadRequest(message, **kw)
        if kind in TRANSIENT_TYPES:
            return Transient(message, **kw)
        return self.error_from_status(response, message=message, code=kind)

    async def _call(
        self,
        limiter_key: str,
        method: str,
        path: str,
        credentials: Mapping[str, str],
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """One read, each attempt (retries included) first taking a slot for its base and
        for its token."""
        claims = [
            (self.rate_limiter, limiter_key),
            (self.token_limiter, self.fingerprint(self.api_key(credentials))),
        ]

        async def attempt() -> Any:
            await acquire_together(claims)
            response = await self.request(
                method,
                path,
                credentials,
                params=params,
                json_body=json_body,
                idempotent=True,  # every call here is a read
                attempts=1,
            )
            try:
                return response.json()
            except ValueError:
                raise Transient(
                    "answered with a body that is not JSON",
                    provider=self.identifier,
                    status=response.status_code,
                ) from None

        return await call_with_retries(
            attempt,
            attempts=self.settings.http_max_attempts,
            max_wait=self.settings.retry_after_max_seconds,
        )

    # -- the contract ----------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v0/meta/whoami``: the user id, and the email when the token may read it."""
        me = await self._call(META_KEY, "GET", "/v0/meta/whoami", credentials)
        user_id = me.get("id") if isinstance(me, dict) else None
        if not user_id:
            raise Transient("whoami returned no user id", provider=self.identifier)
        name = me.get("email") or credentials.get("label") or user_id
        return AccountInfo(id=str(user_id), name=str(name))

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> list[ContentItem]:
        """Fetch records as content items: title from the primary field, body from long text."""
        request = parse_fetch(data)
        table = await self._table_schema_or_none(credentials, request.base_id, request.table)
        records = await self.records(credentials, request.list_input())
        return [_to_item(record, request, table) for record in records]

    def limit_query(self, data: Any, max_items: int) -> dict[str, Any]:
        """``data`` (a ``send_data`` input) asking for at most ``max_items`` records."""
        request = parse_fetch(data)
        wanted = min(max_items, request.max_records or max_items)
        return request.model_copy(update={"max_records": wanted}).model_dump(exclude_defaults=True)

    # -- exposed functions -----------------------------------------------------------------

    @expose
    async def bases(self, credentials: Mapping[str, str], params: NoInput) -> list[dict]:
        """Bases the token can see: ``[{id, name, permissionLevel}]``."""

        async def fetch(cursor: dict[str, Any]) -> Any:
            return await self._call(META_KEY, "GET", "/v0/meta/bases", credentials, params=cursor)

        return await _offset_paginator("bases").collect(fetch)

    @expose
    async def tables(self, credentials: Mapping[str, str], params: BaseInput) -> list[dict]:
        """A base's tables with their fields (id, name, type, options) and views."""
        body = await self._call(
            params.base_id, "GET", f"/v0/meta/bases/{params.base_id}/tables", credentials
        )
        return list(body.get("tables") or [])

    @expose
    async def list_records(
        self, credentials: Mapping[str, str], params: ListRecordsInput
    ) -> list[dict]:
        """Every matching record (offset pagination), as ``{id, createdTime, fields}``."""
        records = await self.records(credentials, params)
        return [r.model_dump(mode="json", by_alias=True) for r in records]

    # -- typed reads -----------------------------------------------------------------------

    async def records(
        self, credentials: Mapping[str, str], params: ListRecordsInput
    ) -> list[AirtableRecord]:
        """Every matching record; long formulas go through ``POST .../listRecords``."""
        path = f"/v0/{params.base_id}/{params.table}"
        use_post = params.is_long()

        async def fetch(cursor: dict[str, Any]) -> Any:
            if use_post:
                return await self._call(
                    params.base_id,
                    "POST",
                    f"{path}/listRecords",
                    credentials,
                    json_body={**params.body(), **cursor},
                )
            query = {**params.query(), **cursor}
            if params.return_fields_by_field_id:
                query["returnFieldsByFieldId"] = "true"
            return await self._call(params.base_id, "GET", path, credentials, params=query)

        raw = await _offset_paginator("records", max_items=params.max_records).collect(fetch)
        return [AirtableRecord.model_validate(r) for r in raw]

    async def table_schema(
        self, credentials: Mapping[str, str], base_id: str, table: str
    ) -> dict[str, Any]:
        """The schema of one table, found by id or name."""
        for entry in await self.tables(credentials, BaseInput(base_id=base_id)):
            if table in (entry.get("id"), entry.get("name")):
                return dict(entry)
        raise BadRequest(
            f"table {table!r} is not in base {base_id}; {ACCESS_HINT}",
            provider=self.identifier,
            code="TABLE_NOT_FOUND",
        )

    async def _table_schema_or_none(
        self, credentials: Mapping[str, str], base_id: str, table: str
    ) -> dict[str, Any] | None:
        """The schema when the token may read it (``schema.bases:read``), else ``None``."""
        try:
            return await self.table_schema(credentials, base_id, table)
        except (InvalidCredentials, BadRequest):
            return None  # a real credential or id problem surfaces on the records call

    async def dataframe(
        self, credentials: Mapping[str, str], params: ListRecordsInput | Mapping[str, Any]
    ) -> pd.DataFrame:
        """Records as a DataFrame (index = record id), typed by the schema's field types."""
        request = (
            params
            if isinstance(params, ListRecordsInput)
            else ListRecordsInput.model_validate(params)
        )
        table = await self._table_schema_or_none(credentials, request.base_id, request.table)
        if request.cell_format == "string":
            table = None  # every cell is formatted text: the schema types no longer apply
        records = await self.records(credentials, request)
        return records_to_dataframe(
            records,
            table,
            only=request.fields,
            by_field_id=request.return_fields_by_field_id,
        )


# -- helpers ------------------------------------------------------------------------------------


def _error_parts(response: httpx.Response) -> tuple[str | None, str]:
    """``(type, message)`` from any of Airtable's error shapes."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:300] or response.reason_phrase or "error"
    error: Any = body.get("error") if isinstance(body, dict) else None
    if error is None and isinstance(body, dict) and isinstance(body.get("errors"), list):
        first = body["errors"][0] if body["errors"] else {}
        error = {"type": first.get("error"), "message": first.get("message")}
    if isinstance(error, str):
        return error, error
    if isinstance(error, dict):
        kind = error.get("type")
        message = error.get("message") or kind or "error"
        return (str(kind) if kind else None), str(message)[:500]
    return None, str(body)[:300]


def _offset_paginator(key: str, *, max_items: int | None = None) -> CursorPaginator:
    """Airtable's ``offset`` is an opaque cursor: send it back until it is absent (or until
    ``max_items`` are in hand, should the server not have applied ``maxRecords``)."""
    return CursorPaginator(
        cursor_param="offset",
        next_cursor=lambda body: body.get("offset"),
        items=lambda body: list(body.get(key) or []),
        max_items=max_items,
    )


def _fields_by_key(table: dict[str, Any] | None, by_field_id: bool) -> dict[str, dict]:
    key = "id" if by_field_id else "name"
    return {str(f.get(key)): f for f in (table or {}).get("fields") or []}


def _primary_field(table: dict[str, Any] | None, by_field_id: bool = False) -> str | None:
    """The primary field's key in ``fields`` (its name, or its id with returnFieldsByFieldId)."""
    for spec in (table or {}).get("fields") or []:
        if spec.get("id") == (table or {}).get("primaryFieldId"):
            return str(spec.get("id" if by_field_id else "name"))
    return None


def _first_field_of(
    table: dict[str, Any] | None, types: tuple[str, ...], by_field_id: bool = False
) -> str | None:
    """The key of the first field of the first of ``types`` that the table has."""
    for kind in types:
        for spec in (table or {}).get("fields") or []:
            if spec.get("type") == kind:
                return str(spec.get("id" if by_field_id else "name"))
    return None


def _to_item(
    record: AirtableRecord, request: AirtableFetch, table: dict[str, Any] | None
) -> ContentItem:
    by_id = request.return_fields_by_field_id
    title_field = request.title_field or _primary_field(table, by_id)
    body_field = request.body_field or _first_field_of(table, BODY_TYPES, by_id)
    modified_field = _first_field_of(table, ("lastModifiedTime",), by_id)
    title = record.fields.get(title_field) if title_field else None
    body = record.fields.get(body_field) if body_field else None
    table_id = (table or {}).get("id")
    return ContentItem(
        source="airtable",
        id=record.id,
        title=str(title) if title not in (None, "") else record.id,
        body=str(body) if body is not None else "",
        source_url=(
            f"https://airtable.com/{request.base_id}/{table_id}/{record.id}" if table_id else None
        ),
        fields=record.fields,
        updated_at=_parse_time(record.fields.get(modified_field)) if modified_field else None,
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


ColumnKind = Literal["number", "bool", "datetime", "text", "object"]


def field_kind(spec: dict[str, Any] | None) -> ColumnKind:
    """The column type for an Airtable field type (formula/rollup/lookup use their result)."""
    if not spec:
        return "object"
    kind = spec.get("type")
    result = ((spec.get("options") or {}).get("result")) or None
    if kind in ("formula", "rollup", "lookup") and isinstance(result, dict):
        return field_kind(result)
    if kind in NUMBER_TYPES:
        return "number"
    if kind == "checkbox":
        return "bool"
    if kind in DATETIME_TYPES:
        return "datetime"
    if kind in TEXT_TYPES:
        return "text"
    return "object"


def _column(values: list[Any], kind: ColumnKind, index: pd.Index) -> pd.Series:
    if kind == "number":
        return pd.to_numeric(pd.Series(values, index=index, dtype="object"), errors="coerce")
    if kind == "bool":  # Airtable leaves unchecked boxes out of ``fields``
        return pd.Series([bool(v) for v in values], index=index, dtype=bool)
    if kind == "datetime":
        return pd.to_datetime(
            pd.Series(values, index=index, dtype="object"),
            utc=True,
            format="ISO8601",
            errors="coerce",
        )
    if kind == "text":
        return pd.Series(
            [None if v is None else str(v) for v in values], index=index, dtype="string"
        )
    return pd.Series(values, index=index, dtype="object")


def records_to_dataframe(
    records: list[AirtableRecord],
    table: dict[str, Any] | None = None,
    *,
    only: list[str] | None = None,
    by_field_id: bool = False,
) -> pd.DataFrame:
    """One column per field (schema order, else first seen), typed by the schema when known."""
    schema = _fields_by_key(table, by_field_id)
    if only:
        names = list(only)
    else:
        names = list(schema)
        for record in records:
            names.extend(n for n in record.fields if n not in names)
    index = pd.Index([r.id for r in records], name="id")
    columns: dict[str, pd.Series] = {}
    for name in names:
        values = [r.fields.get(name) for r in records]
        spec = schema.get(name)
        if spec is None:  # no schema: let pandas infer from the values
            columns[name] = pd.Series(values, index=index, dtype="object").infer_objects()
        else:
            columns[name] = _column(values, field_kind(spec), index)
    return pd.DataFrame(columns, index=index)
