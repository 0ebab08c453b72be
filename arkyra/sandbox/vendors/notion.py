"""Notion API emulator: bot user, search, databases with data sources, queries, pages, blocks.

Follows ``reference/provider-contracts-content-ai.md`` section 1. Every request needs
``Authorization: Bearer secret_…|ntn_…`` (anything else is 401 ``unauthorized``) and a
``Notion-Version`` header (missing: 400 ``missing_version``). ``2025-09-03`` and later serve data
sources; ``2022-06-28`` serves the legacy database query, which fails for a database with more
than one data source, as the real API does.

Data is generated: the content data source has ``seed_rows`` rows (store knob, default 25), and
``POST /notion/_sandbox/seed?rows=N`` regenerates it with N rows. Each page has a block tree using
every block type the Markdown converter knows, nested children and one ``unsupported`` block.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "notion"
NEW_VERSION = "2025-09-03"
KNOWN_VERSIONS = frozenset({"2022-06-28", "2025-09-03", "2026-03-11"})
DEFAULT_ROWS = 25
MAX_PAGE_SIZE = 100
WORKSPACE_ID = "0b0f1c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3"
BOT_ID = "b0700000-0000-4000-8000-000000000001"
CONTENT_DATABASE_ID = "d0000000-0000-4000-8000-000000000001"
CONTENT_DATA_SOURCE_ID = "da000000-0000-4000-8000-000000000001"
CAMPAIGNS_DATABASE_ID = "d0000000-0000-4000-8000-000000000002"
ACTIVE_DATA_SOURCE_ID = "da000000-0000-4000-8000-000000000002"
ARCHIVE_DATA_SOURCE_ID = "da000000-0000-4000-8000-000000000003"
RESTRICTED_DATABASE_ID = "d0000000-0000-4000-8000-0000000000ff"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ("Draft", "In review", "Published")
TAGS = ("video", "blog", "social", "newsletter")
NAMESPACE = uuid.UUID("6f1e0f4e-5a7b-4c1d-9e2f-000000000000")

CONTENT_SCHEMA: dict[str, str] = {
    "Name": "title",
    "Status": "status",
    "Tags": "multi_select",
    "Published": "date",
    "Views": "number",
    "Featured": "checkbox",
    "Link": "url",
    "Score": "formula",
}


# -- errors -----------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, **additional: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "object": "error",
        "status": status,
        "code": code,
        "message": message,
        "request_id": str(uuid.uuid4()),
    }
    if additional:
        body["additional_data"] = additional
    return JSONResponse(body, status_code=status)


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Notion's ``{object:"error", status, code, message}`` for injected faults."""
    if kind == "rate_limit":
        response = _error(
            429,
            "rate_limited",
            "You have been rate limited. Please try again in a few minutes.",
            rate_limit_reason="request_rate",
        )
        response.headers["Retry-After"] = str(math.ceil(retry_after or 1))  # integer seconds
        return response
    code = {
        409: "conflict_error",
        502: "service_unavailable",
        503: "service_unavailable",
        504: "gateway_timeout",
        529: "service_overload",
    }.get(status, "internal_server_error")
    return _error(status, code, "Unexpected error occurred (sandbox fault).")


def _not_found(object_id: str) -> JSONResponse:
    return _error(
        404,
        "object_not_found",
        f"Could not find object with ID: {object_id}. Make sure the relevant pages and "
        "databases are shared with your integration.",
    )


# -- data generation --------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _rt(text: str, *, href: str | None = None, **annotations: bool) -> dict[str, Any]:
    notes = {
        "bold": False,
        "italic": False,
        "strikethrough": False,
        "underline": False,
        "code": False,
        "color": "default",
    }
    notes.update(annotations)
    link = {"url": href} if href else None
    return {
        "type": "text",
        "text": {"content": text, "link": link},
        "annotations": notes,
        "plain_text": text,
        "href": href,
    }


def _prop_id(name: str) -> str:
    return "title" if name == "Name" else name[:4].lower()


def _schema(names: dict[str, str]) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for name, kind in names.items():
        config: dict[str, Any] = {}
        if kind in ("status", "select", "multi_select"):
            values = STATUSES if kind == "status" else TAGS
            config = {"options": [{"id": v[:3], "name": v, "color": "default"} for v in values]}
        if kind == "formula":
            config = {"expression": 'prop("Views") / 10'}
        if kind == "number":
            config = {"format": "number"}
        schema[name] = {"id": _prop_id(name), "name": name, "type": kind, kind: config}
    return schema


def _row_values(n: int, title: str) -> dict[str, Any]:
    views = None if n % 7 == 3 else n * 10
    published = None if n % 5 == 4 else {"start": f"2026-02-{1 + n % 28:02d}", "end": None}
    return {
        "Name": [_rt(title)],
        "Status": {"id": STATUSES[n % 3][:3], "name": STATUSES[n % 3], "color": "default"},
        "Tags": [{"id": t[:3], "name": t, "color": "default"} for t in TAGS[: 1 + n % 3]],
        "Published": published,
        "Views": views,
        "Featured": n % 2 == 0,
        "Link": f"https://example.com/posts/{n}",
        "Score": {"type": "number", "number": None if views is None else views / 10},
    }


def _make_page(n: int, source: dict[str, Any], title: str) -> dict[str, Any]:
    page_id = str(uuid.uuid5(NAMESPACE, f"{source['id']}/page/{n}"))
    created = EPOCH + timedelta(hours=n)
    values = _row_values(n, title)
    properties = {
        name: {"id": spec["id"], "type": spec["type"], spec["type"]: values.get(name)}
        for name, spec in source["schema"].items()
    }
    slug = "-".join(title.split())
    return {
        "object": "page",
        "id": page_id,
        "created_time": _iso(created),
        "last_edited_time": _iso(created + timedelta(minutes=30)),
        "created_by": {"object": "user", "id": BOT_ID},
        "last_edited_by": {"object": "user", "id": BOT_ID},
        "cover": None,
        "icon": None,
        "parent": {
            "type": "data_source_id",
            "data_source_id": source["id"],
            "database_id": source["database_id"],
        },
        "in_trash": False,
        "properties": properties,
        "url": f"https://www.notion.so/{slug}-{page_id.replace('-', '')}",
        "public_url": None,
    }


def seed(store: dict[str, Any], rows: int = DEFAULT_ROWS) -> None:
    """(Re)generate the workspace: two databases (one with two data sources) and their pages."""
    store.clear()
    store["seed_rows"] = rows
    databases: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for db_id, title, source_specs in (
        (CONTENT_DATABASE_ID, "Content calendar", [(CONTENT_DATA_SOURCE_ID, "Posts", rows)]),
        (
            CAMPAIGNS_DATABASE_ID,
            "Campaigns",
            [(ACTIVE_DATA_SOURCE_ID, "Active", 4), (ARCHIVE_DATA_SOURCE_ID, "Archive", 3)],
        ),
    ):
        databases[db_id] = {"id": db_id, "title": title, "sources": []}
        for source_id, name, count in source_specs:
            source = {
                "id": source_id,
                "name": name,
                "database_id": db_id,
                "schema": _schema(CONTENT_SCHEMA),
                "pages": [],
            }
            source["pages"] = [
                _make_page(n, source, f"{name} item {n}") for n in range(1, count + 1)
            ]
            sources[source_id] = source
            databases[db_id]["sources"].append(source_id)
    store["databases"] = databases
    store["data_sources"] = sources
    store["pages"] = {p["id"]: p for s in sources.values() for p in s["pages"]}
    store["children"] = {}


def _store(state: SandboxState) -> dict[str, Any]:
    store = state.store(IDENTIFIER)
    if "databases" not in store:
        seed(store, int(store.get("seed_rows", DEFAULT_ROWS)))
    return store


def _block(block_id: str, kind: str, value: dict[str, Any], children: list | None = None) -> dict:
    return {
        "object": "block",
        "id": block_id,
        "type": kind,
        kind: value,
        "has_children": bool(children),
        "in_trash": False,
        "_children": children or [],
    }


def page_blocks(page_id: str, title: str) -> list[dict[str, Any]]:
    """A page's block tree (children under ``_children``): every supported type, plus one not."""
    counter = iter(range(1, 1000))

    def bid() -> str:
        return str(uuid.uuid5(NAMESPACE, f"{page_id}/block/{next(counter)}"))

    def text_block(kind: str, text: str, children: list | None = None, **extra: Any) -> dict:
        return _block(
            bid(), kind, {"rich_text": [_rt(text)], "color": "default", **extra}, children
        )

    table_rows = [
        _block(bid(), "table_row", {"cells": [[_rt(a)], [_rt(b)]]})
        for a, b in (("Channel", "Reach"), ("YouTube", "1200"), ("Blog", "300"))
    ]
    return [
        text_block("heading_1", title),
        _block(
            bid(),
            "paragraph",
            {
                "rich_text": [
                    _rt("An "),
                    _rt("important", bold=True),
                    _rt(" note with a "),
                    _rt("link", href="https://example.com"),
                    _rt("."),
                ]
            },
        ),
        text_block("heading_2", "Checklist"),
        text_block("to_do", "Write the script", checked=True),
        text_block("to_do", "Record the voice", checked=False),
        text_block("bulleted_list_item", "Point A", [text_block("bulleted_list_item", "Nested")]),
        text_block("bulleted_list_item", "Point B"),
        text_block("numbered_list_item", "First step"),
        text_block("numbered_list_item", "Second step"),
        text_block("quote", "Content is king."),
        text_block("callout", "Remember the deadline", icon={"type": "emoji", "emoji": "💡"}),
        _block(
            bid(),
            "code",
            {"rich_text": [_rt("print('hello')")], "language": "python", "caption": []},
        ),
        _block(bid(), "divider", {}),
        text_block("toggle", "More details", [text_block("paragraph", "Hidden text")]),
        _block(
            bid(),
            "table",
            {"table_width": 2, "has_column_header": True, "has_row_header": False},
            table_rows,
        ),
        text_block("heading_3", "The end"),
        _block(bid(), "unsupported", {}),
    ]


def _children_of(store: dict[str, Any], block_id: str) -> list[dict[str, Any]] | None:
    """The children list of a page or block, generating a page's tree on first read."""
    known = store["children"]
    if block_id in known:
        return known[block_id]
    page = store["pages"].get(block_id)
    if page is None:
        return None
    title = "".join(t["plain_text"] for t in page["properties"]["Name"]["title"])

    def register(parent_id: str, blocks: list[dict[str, Any]]) -> None:
        known[parent_id] = blocks
        for block in blocks:
            if block["has_children"]:
                register(block["id"], block["_children"])

    register(block_id, page_blocks(block_id, title))
    return known[block_id]


def _public(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if not k.startswith("_")}


# -- request helpers --------------------------------------------------------------------------


def _check_request(request: Request) -> JSONResponse | str:
    """Auth and version; returns the version string, or the error response."""
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else ""
    if not token.startswith(("secret_", "ntn_")):
        return _error(401, "unauthorized", "API token is invalid.")
    version = request.headers.get("notion-version")
    if not version:
        return _error(400, "missing_version", "Notion-Version header failed validation.")
    if version not in KNOWN_VERSIONS:
        return _error(400, "validation_error", f"Notion-Version {version!r} is not supported.")
    return version


def _page_size(raw: Any) -> int | JSONResponse:
    try:
        size = int(raw if raw is not None else MAX_PAGE_SIZE)
    except (TypeError, ValueError):
        return _error(400, "validation_error", "body.page_size should be a number.")
    if not 1 <= size <= MAX_PAGE_SIZE:
        return _error(400, "validation_error", "body.page_size should be ≤ 100.")
    return size


def _list(items: list[dict[str, Any]], cursor: str | None, size: int, **extra: Any) -> Any:
    """One page of a Notion list; the cursor is the id of the first item of the next page."""
    start = 0
    if cursor:
        ids = [i["id"] for i in items]
        if cursor not in ids:
            return _error(400, "validation_error", "start_cursor is invalid.")
        start = ids.index(cursor)
    chunk = items[start : start + size]
    more = start + size < len(items)
    return JSONResponse(
        {
            "object": "list",
            "results": chunk,
            "next_cursor": items[start + size]["id"] if more else None,
            "has_more": more,
            "type": extra.pop("type", "page_or_database"),
            **extra,
        }
    )


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid_json", "Error parsing JSON body.")
    return body if isinstance(body, dict) else _error(400, "invalid_json", "Body must be an object")


# -- filters and sorts ------------------------------------------------------------------------


class _FilterError(ValueError):
    pass


def _value_of(page: dict[str, Any], name: str) -> tuple[str, Any]:
    prop = page["properties"].get(name)
    if prop is None:
        raise _FilterError(f"Could not find property with name or id: {name}")
    kind = prop["type"]
    value = prop[kind]
    if kind in ("title", "rich_text"):
        value = "".join(t["plain_text"] for t in value)
    elif kind in ("status", "select"):
        value = value["name"] if value else None
    elif kind == "multi_select":
        value = [v["name"] for v in value]
    elif kind == "date":
        value = value["start"] if value else None
    elif kind == "formula":
        value = value.get(value.get("type"))
    return kind, value


def _compare(value: Any, op: str, operand: Any) -> bool:
    if op == "is_empty":
        return value in (None, "", [])
    if op == "is_not_empty":
        return value not in (None, "", [])
    if op == "equals":
        return value == operand
    if op == "does_not_equal":
        return value != operand
    if op == "contains":
        return value is not None and operand in value
    if op == "does_not_contain":
        return value is None or operand not in value
    if value is None:
        return False
    ops = {
        "greater_than": lambda: value > operand,
        "less_than": lambda: value < operand,
        "greater_than_or_equal_to": lambda: value >= operand,
        "less_than_or_equal_to": lambda: value <= operand,
        "after": lambda: value > operand,
        "before": lambda: value < operand,
        "on_or_after": lambda: value >= operand,
        "on_or_before": lambda: value <= operand,
    }
    if op not in ops:
        raise _FilterError(f"Unsupported filter condition: {op}")
    return bool(ops[op]())


def _matches(page: dict[str, Any], spec: dict[str, Any]) -> bool:
    if "and" in spec:
        return all(_matches(page, s) for s in spec["and"])
    if "or" in spec:
        return any(_matches(page, s) for s in spec["or"])
    if "timestamp" in spec:
        stamp = spec["timestamp"]
        condition = spec.get(stamp) or {}
        return all(_compare(page.get(stamp), op, v) for op, v in condition.items())
    name = spec.get("property")
    if not isinstance(name, str):
        raise _FilterError("body.filter.property should be defined")
    kind, value = _value_of(page, name)
    condition = spec.get(kind if kind != "formula" else "formula")
    if kind == "formula" and isinstance(condition, dict):
        condition = next(iter(condition.values()), {})
    if not isinstance(condition, dict):
        raise _FilterError(f"body.filter.{kind} should be defined for property {name}")
    return all(_compare(value, op, v) for op, v in condition.items())


def _sorted(pages: list[dict[str, Any]], sorts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = list(pages)
    for sort in reversed(sorts):
        descending = sort.get("direction") == "descending"
        if "timestamp" in sort:
            stamp = sort["timestamp"]
            result.sort(key=lambda p, s=stamp: p.get(s) or "", reverse=descending)
            continue
        name = sort.get("property")
        if not isinstance(name, str):
            raise _FilterError("body.sorts[].property or timestamp should be defined")
        if result:
            _value_of(result[0], name)  # an unknown property is a validation error

        def key(page: dict[str, Any], prop: str = name) -> Any:
            value = _value_of(page, prop)[1]
            return str(value) if isinstance(value, list) else value

        present = [p for p in result if key(p) is not None]
        empty = [p for p in result if key(p) is None]  # empties sort last either way
        result = sorted(present, key=key, reverse=descending) + empty
    return result


def _legacy_page(page: dict[str, Any]) -> dict[str, Any]:
    legacy = dict(page)
    legacy["parent"] = {"type": "database_id", "database_id": page["parent"]["database_id"]}
    legacy["archived"] = False
    return legacy


def _run_query(
    pages: list[dict[str, Any]], body: dict[str, Any]
) -> list[dict[str, Any]] | JSONResponse:
    try:
        selected = [p for p in pages if not body.get("filter") or _matches(p, body["filter"])]
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list):
            raise _FilterError("body.sorts should be an array")
        return _sorted(selected, sorts) if sorts else selected
    except _FilterError as exc:
        return _error(400, "validation_error", str(exc))
    except TypeError:
        return _error(400, "validation_error", "The filter value does not match the type.")


# -- routes -----------------------------------------------------------------------------------


def routes(state: SandboxState) -> list[BaseRoute]:
    async def users_me(request: Request) -> Response:
        checked = _check_request(request)
        if isinstance(checked, Response):
            return checked
        return JSONResponse(
            {
                "object": "user",
                "id": BOT_ID,
                "name": "ARKYRA Sandbox Bot",
                "avatar_url": None,
                "type": "bot",
                "bot": {
                    "owner": {"type": "workspace", "workspace": True},
                    "workspace_id": WORKSPACE_ID,
                    "workspace_name": "Sandbox Workspace",
                    "workspace_limits": {"max_file_upload_size_in_bytes": 5_368_709_120},
                },
            }
        )

    async def search(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        size = _page_size(body.get("page_size"))
        if isinstance(size, Response):
            return size
        store = _store(state)
        wanted = (body.get("filter") or {}).get("value")
        container = "data_source" if version >= NEW_VERSION else "database"
        if wanted not in (None, "page", container):
            return _error(
                400, "validation_error", f"body.filter.value should be page or {container}"
            )
        results: list[dict[str, Any]] = []
        if wanted in (None, container):
            if container == "data_source":
                results += [_data_source(s) for s in store["data_sources"].values()]
            else:
                results += [_legacy_database(store, d) for d in store["databases"]]
        if wanted in (None, "page"):
            results += list(store["pages"].values())
        query = str(body.get("query") or "").lower()
        if query:
            results = [r for r in results if query in _title_of(r).lower()]
        return _list(results, body.get("start_cursor"), size)

    async def get_database(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        store = _store(state)
        database_id = request.path_params["database_id"]
        if database_id == RESTRICTED_DATABASE_ID:
            return _restricted()
        if database_id not in store["databases"]:
            return _not_found(database_id)
        if version < NEW_VERSION:
            return JSONResponse(_legacy_database(store, database_id))
        return JSONResponse(_database(store, database_id))

    async def query_database(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        store = _store(state)
        database_id = request.path_params["database_id"]
        if version >= NEW_VERSION:
            return _error(
                400,
                "invalid_request_url",
                f"Invalid request URL for Notion-Version {version}: "
                "query data sources with /v1/data_sources/{id}/query.",
            )
        if database_id == RESTRICTED_DATABASE_ID:
            return _restricted()
        database = store["databases"].get(database_id)
        if database is None:
            return _not_found(database_id)
        if len(database["sources"]) > 1:
            return _error(
                400,
                "validation_error",
                "Databases with multiple data sources are not supported in this API version.",
            )
        return await _query(request, store["data_sources"][database["sources"][0]], legacy=True)

    async def get_data_source(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        if version < NEW_VERSION:
            return _error(400, "invalid_request_url", "Invalid request URL.")
        source_id = request.path_params["data_source_id"]
        source = _store(state)["data_sources"].get(source_id)
        return JSONResponse(_data_source(source)) if source else _not_found(source_id)

    async def query_data_source(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        if version < NEW_VERSION:
            return _error(400, "invalid_request_url", "Invalid request URL.")
        source_id = request.path_params["data_source_id"]
        source = _store(state)["data_sources"].get(source_id)
        if source is None:
            return _not_found(source_id)
        return await _query(request, source, legacy=False)

    async def get_page(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        page_id = request.path_params["page_id"]
        page = _store(state)["pages"].get(page_id)
        if page is None:
            return _not_found(page_id)
        return JSONResponse(_legacy_page(page) if version < NEW_VERSION else page)

    async def block_children(request: Request) -> Response:
        version = _check_request(request)
        if isinstance(version, Response):
            return version
        block_id = request.path_params["block_id"]
        children = _children_of(_store(state), block_id)
        if children is None:
            return _not_found(block_id)
        size = _page_size(request.query_params.get("page_size"))
        if isinstance(size, Response):
            return size
        blocks = [_public(b) for b in children]
        return _list(blocks, request.query_params.get("start_cursor"), size, type="block", block={})

    async def seed_route(request: Request) -> Response:
        try:
            rows = int(request.query_params.get("rows", DEFAULT_ROWS))
        except ValueError:
            return JSONResponse({"error": "rows must be an integer"}, status_code=400)
        if not 0 <= rows <= 100_000:
            return JSONResponse({"error": "rows must be between 0 and 100000"}, status_code=400)
        seed(state.store(IDENTIFIER), rows)
        return JSONResponse(
            {
                "database_id": CONTENT_DATABASE_ID,
                "data_source_id": CONTENT_DATA_SOURCE_ID,
                "rows": rows,
            }
        )

    return [
        Route("/v1/users/me", users_me, methods=["GET"]),
        Route("/v1/search", search, methods=["POST"]),
        Route("/v1/databases/{database_id}", get_database, methods=["GET"]),
        Route("/v1/databases/{database_id}/query", query_database, methods=["POST"]),
        Route("/v1/data_sources/{data_source_id}", get_data_source, methods=["GET"]),
        Route("/v1/data_sources/{data_source_id}/query", query_data_source, methods=["POST"]),
        Route("/v1/pages/{page_id}", get_page, methods=["GET"]),
        Route("/v1/blocks/{block_id}/children", block_children, methods=["GET"]),
        Route("/_sandbox/seed", seed_route, methods=["POST"]),
    ]


async def _query(request: Request, source: dict[str, Any], *, legacy: bool) -> Response:
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    size = _page_size(body.get("page_size"))
    if isinstance(size, Response):
        return size
    pages = _run_query(source["pages"], body)
    if isinstance(pages, Response):
        return pages
    wanted = request.query_params.getlist("filter_properties")
    if wanted:
        pages = [_only_properties(p, set(wanted)) for p in pages]
    if legacy:
        pages = [_legacy_page(p) for p in pages]
    return _list(pages, body.get("start_cursor"), size)


def _only_properties(page: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    kept = {n: p for n, p in page["properties"].items() if p["id"] in wanted or n in wanted}
    return {**page, "properties": kept}


def _restricted() -> JSONResponse:
    return _error(403, "restricted_resource", "API token does not have access to this resource.")


def _title_of(result: dict[str, Any]) -> str:
    if result.get("object") == "page":
        return "".join(t["plain_text"] for t in result["properties"]["Name"]["title"])
    return "".join(t["plain_text"] for t in result.get("title") or [])


def _data_source(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "data_source",
        "id": source["id"],
        "title": [_rt(source["name"])],
        "parent": {"type": "database_id", "database_id": source["database_id"]},
        "database_parent": {"type": "workspace", "workspace": True},
        "properties": source["schema"],
        "created_time": _iso(EPOCH),
        "last_edited_time": _iso(EPOCH),
        "in_trash": False,
        "url": f"https://www.notion.so/{source['id'].replace('-', '')}",
    }


def _database_base(store: dict[str, Any], database_id: str) -> dict[str, Any]:
    database = store["databases"][database_id]
    return {
        "object": "database",
        "id": database_id,
        "title": [_rt(database["title"])],
        "description": [],
        "parent": {"type": "workspace", "workspace": True},
        "created_time": _iso(EPOCH),
        "last_edited_time": _iso(EPOCH),
        "is_inline": False,
        "url": f"https://www.notion.so/{database_id.replace('-', '')}",
        "public_url": None,
    }


def _database(store: dict[str, Any], database_id: str) -> dict[str, Any]:
    database = store["databases"][database_id]
    sources = [store["data_sources"][s] for s in database["sources"]]
    return {
        **_database_base(store, database_id),
        "in_trash": False,
        "data_sources": [{"id": s["id"], "name": s["name"]} for s in sources],
    }


def _legacy_database(store: dict[str, Any], database_id: str) -> dict[str, Any]:
    database = store["databases"][database_id]
    first = store["data_sources"][database["sources"][0]]
    return {**_database_base(store, database_id), "archived": False, "properties": first["schema"]}
