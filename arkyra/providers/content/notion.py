"""Notion: pages and data sources as content items, Markdown bodies and typed DataFrames.

Follows ``reference/provider-contracts-content-ai.md`` section 1. Requests send
``Notion-Version: 2025-09-03`` (databases are containers of data sources: discover with
``GET /v1/databases/{id}``, then ``POST /v1/data_sources/{id}/query``). The legacy
``POST /v1/databases/{id}/query`` is sent with ``Notion-Version: 2022-06-28``, the only version
family that still serves it, for integrations whose databases have a single data source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    RateLimited,
    Transient,
)
from arkyra.http.paginate import CursorPaginator
from arkyra.providers.base import (
    AccountInfo,
    ExposedInput,
    ThirdPartyProvider,
    api_key_field,
    expose,
    third_party,
)
from arkyra.providers.content.items import ContentItem
from arkyra.providers.content.notion_markdown import blocks_to_markdown, plain_text

NOTION_VERSION = "2025-09-03"
LEGACY_NOTION_VERSION = "2022-06-28"
PAGE_SIZE = 100
MAX_BLOCK_DEPTH = 16
PAGE_CONCURRENCY = 3  # Notion averages about 3 requests per second per connection
SHARE_HINT = (
    "make sure the page or database is shared with the integration "
    "(in Notion: ... menu > Connections > add the integration) and that the id is right"
)
NOT_SHARED_CODES = frozenset({"restricted_resource", "object_not_found"})
BAD_REQUEST_CODES = frozenset(
    {
        "validation_error",
        "invalid_json",
        "invalid_request_url",
        "invalid_request",
        "missing_version",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "internal_server_error",
        "service_unavailable",
        "service_overload",
        "gateway_timeout",
        "conflict_error",
        "database_connection_unavailable",
    }
)
NOT_RECURSED = frozenset({"child_page", "child_database"})  # their children are other pages

Page = dict[str, Any]


# -- inputs -----------------------------------------------------------------------------------


class SearchInput(ExposedInput):
    query: str = ""
    object: Literal["page", "data_source"] | None = Field(
        default=None, description="Only pages or only data sources; both when empty."
    )
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)
    max_results: int | None = Field(default=None, ge=1)


class DatabaseInput(ExposedInput):
    database_id: str = Field(min_length=1)


class PageInput(ExposedInput):
    page_id: str = Field(min_length=1)


class _QueryOptions(ExposedInput):
    filter: dict[str, Any] | None = Field(default=None, description="Notion filter, passed as is.")
    sorts: list[dict[str, Any]] | None = Field(default=None, description="Notion sorts, as is.")
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)
    raw: bool = Field(default=False, description="Return Notion's page objects unsimplified.")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"page_size": self.page_size}
        if self.filter is not None:
            body["filter"] = self.filter
        if self.sorts is not None:
            body["sorts"] = self.sorts
        return body


class DataSourceQueryInput(_QueryOptions):
    data_source_id: str = Field(min_length=1)
    filter_properties: list[str] | None = Field(
        default=None, description="Property ids to return (query parameter filter_properties)."
    )


class DatabaseQueryInput(_QueryOptions):
    database_id: str = Field(min_length=1)


class NotionFetch(BaseModel):
    """What ``send_data`` fetches: a data source, a database (all its data sources) or either."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="A database id or a data source id.")
    data_source_id: str | None = None
    database_id: str | None = None
    filter: dict[str, Any] | None = None
    sorts: list[dict[str, Any]] | None = None
    include_body: bool = Field(default=True, description="Read each page's blocks as Markdown.")
    legacy: bool = Field(default=False, description="Use the 2022-06-28 database query.")
    max_items: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many pages: no further query pages, no other bodies read.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> NotionFetch:
        given = [v for v in (self.id, self.data_source_id, self.database_id) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of id, data_source_id or database_id")
        if self.legacy and self.data_source_id:
            raise ValueError("the legacy query takes a database_id, not a data_source_id")
        return self


def parse_fetch(data: Any) -> NotionFetch:
    """``send_data``'s input: an id string or a mapping for :class:`NotionFetch`."""
    if isinstance(data, NotionFetch):
        return data
    if isinstance(data, str):
        data = {"id": data}
    try:
        return NotionFetch.model_validate(data)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "data": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid notion fetch request", errors) from None


# -- the provider -----------------------------------------------------------------------------


@third_party(
    identifier="notion",
    title="Notion",
    description="Pages and databases (data sources) from a Notion workspace, as Markdown.",
    category="content",
    fields=[
        api_key_field(
            "Integration secret",
            help="Internal integration secret (ntn_... or secret_...); share pages with it.",
        )
    ],
)
class NotionProvider(ThirdPartyProvider):
    default_base_url = "https://api.notion.com"

    # -- edge ------------------------------------------------------------------------------

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        api_key = credentials.get("api_key")
        if not api_key:
            raise InvalidCredentials("the api_key credential is missing", provider=self.identifier)
        return {"Authorization": f"Bearer {api_key}", "Notion-Version": NOTION_VERSION}

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Map Notion's ``{object:"error", status, code, message}`` by code, then by status."""
        code, message = _error_parts(response)
        kw: dict[str, Any] = {
            "provider": self.identifier,
            "status": response.status_code,
            "code": code,
        }
        if code == "rate_limited" or response.status_code == 429:
            return RateLimited(message, retry_after=self.retry_after(response), **kw)
        if code == "unauthorized":
            return InvalidCredentials(message, **kw)
        if code in NOT_SHARED_CODES:
            return BadRequest(f"{message}; {SHARE_HINT}", **kw)
        if code in BAD_REQUEST_CODES:
            return BadRequest(message, **kw)
        if code in TRANSIENT_CODES:
            return Transient(message, **kw)
        return self.error_from_status(response, message=message, code=code)

    async def _post(
        self,
        path: str,
        credentials: Mapping[str, str],
        body: dict[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        version: str = NOTION_VERSION,
    ) -> Any:
        """A read-only POST (query, search): safe to repeat, so retried like a GET."""
        return await self.post_json(
            path,
            credentials,
            body,
            params=params,
            headers={"Notion-Version": version},
            idempotent=True,
        )

    async def _collect(
        self,
        path: str,
        credentials: Mapping[str, str],
        body: dict[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        version: str = NOTION_VERSION,
        max_results: int | None = None,
    ) -> list[dict[str, Any]]:
        """The results of a paginated POST list (``start_cursor``/``has_more``/``next_cursor``):
        all of them, or the first ``max_results`` without asking for further pages."""
        if max_results is not None:
            body = {**body, "page_size": min(int(body.get("page_size", PAGE_SIZE)), max_results)}

        async def fetch(cursor: dict[str, Any]) -> Any:
            page = await self._post(
                path, credentials, {**body, **cursor}, params=params, version=version
            )
            _require_complete(page, self.identifier)
            return page

        return await _paginator(max_items=max_results).collect(fetch)

    # -- the contract ----------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /v1/users/me``: the bot user names its workspace."""
        me = await self.get_json("/v1/users/me", credentials)
        bot = me.get("bot") or {}
        account_id = bot.get("workspace_id") or me.get("id")
        if not account_id:
            raise Transient("users/me returned no workspace or user id", provider=self.identifier)
        name = bot.get("workspace_name") or credentials.get("label") or me.get("name")
        return AccountInfo(id=str(account_id), name=str(name or self.title))

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> list[ContentItem]:
        """Fetch the pages of a data source or database as content items (body = Markdown).

        With ``max_items`` the query stops once that many pages are in hand and only those
        pages' blocks are read.
        """
        request = parse_fetch(data)
        pages = await self.fetch_pages(credentials, request)
        limit = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def to_item(page: Page) -> ContentItem:
            body = ""
            if request.include_body:
                async with limit:
                    body = await self.markdown_of(credentials, page["id"])
            return page_to_item(page, body)

        return list(await asyncio.gather(*(to_item(page) for page in pages)))

    def limit_query(self, data: Any, max_items: int) -> dict[str, Any]:
        """``data`` (a ``send_data`` input) asking for at most ``max_items`` pages."""
        request = parse_fetch(data)
        wanted = min(max_items, request.max_items or max_items)
        return request.model_copy(update={"max_items": wanted}).model_dump(exclude_defaults=True)

    # -- exposed functions -----------------------------------------------------------------

    @expose
    async def search(self, credentials: Mapping[str, str], params: SearchInput) -> list[dict]:
        """Pages and data sources shared with the integration (``POST /v1/search``)."""
        body: dict[str, Any] = {"page_size": params.page_size}
        if params.query:
            body["query"] = params.query
        if params.object:
            body["filter"] = {"property": "object", "value": params.object}
        results = await self._collect(
            "/v1/search", credentials, body, max_results=params.max_results
        )
        return [_search_result(r) for r in results]

    @expose
    async def list_data_sources(
        self, credentials: Mapping[str, str], params: DatabaseInput
    ) -> list[dict]:
        """A database's data sources, ``[{id, name}]`` (``GET /v1/databases/{id}``)."""
        database = await self.get_json(f"/v1/databases/{params.database_id}", credentials)
        return [
            {"id": s.get("id"), "name": s.get("name") or ""}
            for s in database.get("data_sources") or []
        ]

    @expose
    async def query_data_source(
        self, credentials: Mapping[str, str], params: DataSourceQueryInput
    ) -> list[dict]:
        """Every page of a data source; filter and sorts are passed to Notion unchanged."""
        pages = await self.data_source_pages(
            credentials,
            params.data_source_id,
            params.body(),
            filter_properties=params.filter_properties,
        )
        return pages if params.raw else [simplify_page(p) for p in pages]

    @expose
    async def query_database(
        self, credentials: Mapping[str, str], params: DatabaseQueryInput
    ) -> list[dict]:
        """Legacy database query (``Notion-Version: 2022-06-28``); single-source databases only."""
        pages = await self.legacy_database_pages(credentials, params.database_id, params.body())
        return pages if params.raw else [simplify_page(p) for p in pages]

    @expose
    async def get_page(self, credentials: Mapping[str, str], params: PageInput) -> dict:
        """One page object (``GET /v1/pages/{id}``)."""
        page = await self.get_json(f"/v1/pages/{params.page_id}", credentials)
        return dict(page)

    @expose
    async def page_markdown(self, credentials: Mapping[str, str], params: PageInput) -> dict:
        """A page's content (its block tree, read recursively) as Markdown."""
        markdown = await self.markdown_of(credentials, params.page_id)
        return {"page_id": params.page_id, "markdown": markdown}

    # -- reads used by the above -----------------------------------------------------------

    async def data_source_pages(
        self,
        credentials: Mapping[str, str],
        data_source_id: str,
        body: dict[str, Any] | None = None,
        *,
        filter_properties: list[str] | None = None,
        max_items: int | None = None,
    ) -> list[Page]:
        """``POST /v1/data_sources/{id}/query``: every page of results, or the first few."""
        params = {"filter_properties": filter_properties} if filter_properties else None
        return await self._collect(
            f"/v1/data_sources/{data_source_id}/query",
            credentials,
            body or {"page_size": PAGE_SIZE},
            params=params,
            max_results=max_items,
        )

    async def legacy_database_pages(
        self,
        credentials: Mapping[str, str],
        database_id: str,
        body: dict[str, Any] | None = None,
        *,
        max_items: int | None = None,
    ) -> list[Page]:
        """``POST /v1/databases/{id}/query`` with the legacy version header."""
        return await self._collect(
            f"/v1/databases/{database_id}/query",
            credentials,
            body or {"page_size": PAGE_SIZE},
            version=LEGACY_NOTION_VERSION,
            max_results=max_items,
        )

    async def database_pages(
        self,
        credentials: Mapping[str, str],
        database_id: str,
        body: dict[str, Any] | None = None,
        *,
        max_items: int | None = None,
    ) -> list[Page]:
        """The pages of every data source of a database, source by source, until ``max_items``."""
        sources = await self.list_data_sources(credentials, DatabaseInput(database_id=database_id))
        pages: list[Page] = []
        for source in sources:
            wanted = None if max_items is None else max_items - len(pages)
            if wanted == 0:
                break
            pages.extend(
                await self.data_source_pages(credentials, str(source["id"]), body, max_items=wanted)
            )
        return pages

    async def fetch_pages(self, credentials: Mapping[str, str], request: NotionFetch) -> list[Page]:
        """Resolve the fetch target (database, data source, or an id that is either) to pages."""
        body: dict[str, Any] = {"page_size": PAGE_SIZE}
        if request.filter is not None:
            body["filter"] = request.filter
        if request.sorts is not None:
            body["sorts"] = request.sorts
        limit = request.max_items
        if request.legacy:
            return await self.legacy_database_pages(
                credentials, str(request.database_id or request.id), body, max_items=limit
            )
        if request.data_source_id:
            return await self.data_source_pages(
                credentials, request.data_source_id, body, max_items=limit
            )
        if request.database_id:
            return await self.database_pages(
                credentials, request.database_id, body, max_items=limit
            )
        target = str(request.id)
        try:
            return await self.database_pages(credentials, target, body, max_items=limit)
        except BadRequest as exc:
            if exc.code != "object_not_found":
                raise
        return await self.data_source_pages(credentials, target, body, max_items=limit)

    async def block_tree(
        self, credentials: Mapping[str, str], block_id: str, *, depth: int = 0
    ) -> list[dict[str, Any]]:
        """A block's children, with nested children under ``"children"`` (depth-first)."""

        async def fetch(cursor: dict[str, Any]) -> Any:
            return await self.get_json(
                f"/v1/blocks/{block_id}/children",
                credentials,
                params={"page_size": PAGE_SIZE, **cursor},
            )

        blocks = await _paginator().collect(fetch)
        for block in blocks:
            if not block.get("has_children") or block.get("type") in NOT_RECURSED:
                continue
            if depth + 1 >= MAX_BLOCK_DEPTH:
                block["children"] = [{"type": "nesting_too_deep", "has_children": False}]
                continue
            block["children"] = await self.block_tree(credentials, block["id"], depth=depth + 1)
        return blocks

    async def markdown_of(self, credentials: Mapping[str, str], page_id: str) -> str:
        return blocks_to_markdown(await self.block_tree(credentials, page_id))

    async def dataframe(self, credentials: Mapping[str, str], data: Any) -> pd.DataFrame:
        """The rows of a data source or database as a typed DataFrame (index = page id)."""
        request = parse_fetch(data)
        return pages_to_dataframe(await self.fetch_pages(credentials, request))


# -- helpers: errors and pagination -------------------------------------------------------------


def _error_parts(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:300] or response.reason_phrase or "error"
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message")
        return (str(code) if code else None), str(message or code or "error")[:500]
    return None, str(body)[:300]


def _paginator(*, max_items: int | None = None) -> CursorPaginator:
    return CursorPaginator(
        cursor_param="start_cursor",
        next_cursor=lambda body: body.get("next_cursor") if body.get("has_more") else None,
        items=lambda body: list(body.get("results") or []),
        max_items=max_items,
    )


def _require_complete(page: Any, provider: str) -> None:
    """Refuse a silently truncated query (``request_status.type == "incomplete"``)."""
    status = page.get("request_status") if isinstance(page, dict) else None
    if isinstance(status, dict) and status.get("type") == "incomplete":
        reason = status.get("incomplete_reason") or "incomplete"
        raise BadRequest(
            f"Notion stopped the query early ({reason}); narrow it with a filter",
            provider=provider,
            code=str(reason),
        )


# -- helpers: pages, properties, items ----------------------------------------------------------


def page_title(page: Page) -> str:
    """The plain text of the page's title property ('' when it has none)."""
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return plain_text(prop.get("title"))
    return ""


def simplify_property(prop: dict[str, Any]) -> Any:
    """A property's value as plain JSON (text, number, bool, list, ISO date)."""
    kind = prop.get("type")
    value = prop.get(str(kind))
    if kind in ("title", "rich_text"):
        return plain_text(value)
    if kind in ("select", "status"):
        return value.get("name") if value else None
    if kind == "multi_select":
        return [option.get("name") for option in value or []]
    if kind == "date":
        return _date_text(value)
    if kind in ("people",):
        return [p.get("name") or p.get("id") for p in value or []]
    if kind in ("created_by", "last_edited_by"):
        return (value or {}).get("name") or (value or {}).get("id")
    if kind == "relation":
        return [r.get("id") for r in value or []]
    if kind == "files":
        return [_file_url(f) for f in value or []]
    if kind == "formula":
        inner = value or {}
        result = inner.get(inner.get("type"))
        return _date_text(result) if inner.get("type") == "date" else result
    if kind == "rollup":
        return _simplify_rollup(value or {})
    if kind == "unique_id":
        number = (value or {}).get("number")
        prefix = (value or {}).get("prefix")
        return f"{prefix}-{number}" if prefix and number is not None else number
    if kind == "verification":
        return (value or {}).get("state")
    if kind == "button":
        return None
    return value


def _simplify_rollup(value: dict[str, Any]) -> Any:
    kind = value.get("type")
    if kind == "array":
        return [simplify_property(item) for item in value.get("array") or []]
    if kind == "date":
        return _date_text(value.get("date"))
    return value.get(str(kind))


def _date_text(value: Any) -> str | None:
    """``start``, or an ISO 8601 interval ``start/end`` for a range."""
    if not isinstance(value, dict) or not value.get("start"):
        return None
    return f"{value['start']}/{value['end']}" if value.get("end") else str(value["start"])


def _file_url(entry: dict[str, Any]) -> str | None:
    kind = entry.get("type")
    return (entry.get(str(kind)) or {}).get("url") or entry.get("name")


def simplify_properties(page: Page) -> dict[str, Any]:
    return {
        name: simplify_property(prop)
        for name, prop in (page.get("properties") or {}).items()
        if isinstance(prop, dict)
    }


def simplify_page(page: Page) -> dict[str, Any]:
    """A row: ids, url, timestamps, title and simplified property values."""
    return {
        "id": page.get("id"),
        "url": page.get("url"),
        "title": page_title(page),
        "created_time": page.get("created_time"),
        "last_edited_time": page.get("last_edited_time"),
        "properties": simplify_properties(page),
    }


def page_to_item(page: Page, body: str) -> ContentItem:
    return ContentItem(
        source="notion",
        id=str(page.get("id")),
        title=page_title(page),
        body=body,
        source_url=page.get("url"),
        fields=simplify_properties(page),
        updated_at=_parse_time(page.get("last_edited_time")),
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- DataFrame ----------------------------------------------------------------------------------

ColumnKind = Literal["number", "bool", "datetime", "text", "object"]
_TEXT_TYPES = frozenset(
    {
        "title",
        "rich_text",
        "select",
        "status",
        "url",
        "email",
        "phone_number",
        "unique_id",
        "created_by",
        "last_edited_by",
        "verification",
    }
)


def property_kind(prop: dict[str, Any]) -> ColumnKind:
    """The column type a property's values take in a DataFrame."""
    kind = prop.get("type")
    if kind == "formula":
        inner = (prop.get("formula") or {}).get("type")
        return {"number": "number", "boolean": "bool", "date": "datetime", "string": "text"}.get(
            str(inner), "object"
        )
    if kind == "rollup":
        inner = (prop.get("rollup") or {}).get("type")
        return {"number": "number", "date": "datetime"}.get(str(inner), "object")
    if kind == "number":
        return "number"
    if kind == "checkbox":
        return "bool"
    if kind in ("date", "created_time", "last_edited_time"):
        return "datetime"
    if kind in _TEXT_TYPES:
        return "text"
    return "object"


def typed_column(values: list[Any], kind: ColumnKind, index: pd.Index) -> pd.Series:
    """One column with the dtype its kind calls for (dates parsed to UTC, numbers numeric)."""
    if kind == "number":
        return pd.to_numeric(pd.Series(values, index=index, dtype="object"), errors="coerce")
    if kind == "bool":
        if any(v is None for v in values):
            return pd.Series(values, index=index, dtype="boolean")
        return pd.Series([bool(v) for v in values], index=index, dtype=bool)
    if kind == "datetime":
        starts = [v.split("/", 1)[0] if isinstance(v, str) else None for v in values]
        return pd.to_datetime(
            pd.Series(starts, index=index, dtype="object"),
            utc=True,
            format="ISO8601",
            errors="coerce",
        )
    if kind == "text":
        return pd.Series(values, index=index, dtype="string")
    return pd.Series(values, index=index, dtype="object")


def pages_to_dataframe(pages: list[Page]) -> pd.DataFrame:
    """Rows of pages: one column per property in first-seen order, typed by property type."""
    index = pd.Index([str(p.get("id")) for p in pages], name="id")
    kinds: dict[str, ColumnKind] = {}
    for page in pages:
        for name, prop in (page.get("properties") or {}).items():
            if isinstance(prop, dict) and name not in kinds:
                kinds[name] = property_kind(prop)
    columns: dict[str, pd.Series] = {}
    for name, kind in kinds.items():
        values = [
            simplify_property(prop) if isinstance(prop, dict) else None
            for prop in ((p.get("properties") or {}).get(name) for p in pages)
        ]
        columns[name] = typed_column(values, kind, index)
    return pd.DataFrame(columns, index=index)


def _search_result(result: dict[str, Any]) -> dict[str, Any]:
    """A search hit: pages by title property, data sources by their title rich text."""
    kind = result.get("object")
    title = plain_text(result.get("title")) if kind != "page" else page_title(result)
    entry: dict[str, Any] = {
        "object": kind,
        "id": result.get("id"),
        "title": title,
        "url": result.get("url"),
        "last_edited_time": result.get("last_edited_time"),
    }
    parent = result.get("parent") or {}
    if parent.get("database_id"):
        entry["database_id"] = parent["database_id"]
    return entry
