"""Notion: request shapes, error mapping, cursor paging, typed rows, and reads from the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pandas as pd
import pytest
import respx

from arkyra.config import Settings
from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider, provider_class
from arkyra.providers.content.items import ContentItem
from arkyra.providers.content.notion import (
    LEGACY_NOTION_VERSION,
    NOTION_VERSION,
    NotionProvider,
    pages_to_dataframe,
    simplify_property,
)
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import notion as sandbox_notion

REAL = "https://api.notion.com"
KEY = "ntn_test_secret_4c9e1f0b7a"
CREDS = {"api_key": KEY}
DS_ID = "ds-1111"
DB_ID = "db-2222"
PAGE_ID = "page-3333"


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


def rt(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text}, "plain_text": text, "annotations": {}}]


def page(n: int, **properties: Any) -> dict[str, Any]:
    props = {"Name": {"id": "title", "type": "title", "title": rt(f"Row {n}")}}
    props.update(properties)
    return {
        "object": "page",
        "id": f"page-{n}",
        "url": f"https://www.notion.so/Row-{n}",
        "created_time": "2026-01-01T00:00:00.000Z",
        "last_edited_time": f"2026-01-0{n}T10:00:00.000Z",
        "properties": props,
    }


def listing(results: list[dict], next_cursor: str | None = None) -> dict[str, Any]:
    return {
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }


def notion_error(status: int, code: str, message: str = "nope") -> dict[str, Any]:
    return {"object": "error", "status": status, "code": code, "message": message}


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[NotionProvider]:
    """The provider pointed at the real Notion URL (respx intercepts), one attempt per call."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("notion", settings=real_settings, client=client)
        assert isinstance(provider, NotionProvider)
        yield provider


@pytest.fixture
def sandbox(provider_factory: Callable[[str], ThirdPartyProvider]) -> NotionProvider:
    provider = provider_factory("notion")
    assert isinstance(provider, NotionProvider)
    return provider


def test_registration() -> None:
    cls = provider_class("notion")
    assert cls.category == "content"
    assert [f.name for f in cls.fields] == ["api_key"]
    assert cls.default_base_url == REAL
    assert {
        "search",
        "list_data_sources",
        "query_data_source",
        "query_database",
        "get_page",
        "page_markdown",
    } <= set(cls.exposed)


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_reads_the_bot_workspace(real: NotionProvider) -> None:
    me = {
        "object": "user",
        "id": "bot-1",
        "name": "Arkyra",
        "type": "bot",
        "bot": {
            "owner": {"type": "workspace", "workspace": True},
            "workspace_id": "ws-9",
            "workspace_name": "Acme Content",
        },
    }
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v1/users/me").respond(200, json=me)
        account = await real.check_connection(CREDS)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Notion-Version"] == "2025-09-03" == NOTION_VERSION
    assert (account.id, account.name) == ("ws-9", "Acme Content")


async def test_check_connection_without_workspace_name_uses_label(real: NotionProvider) -> None:
    me = {"object": "user", "id": "bot-1", "type": "bot", "bot": {"workspace_id": "ws-9"}}
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/users/me").respond(200, json=me)
        account = await real.check_connection({**CREDS, "label": "Team"})
    assert (account.id, account.name) == ("ws-9", "Team")


async def test_query_data_source_passes_filter_and_pages_with_cursor(real: NotionProvider) -> None:
    flt = {"property": "Done", "checkbox": {"equals": True}}
    sorts = [{"timestamp": "last_edited_time", "direction": "descending"}]
    pages = [
        listing([page(1), page(2)], next_cursor="cur-2"),
        listing([page(3)]),
    ]
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v1/data_sources/{DS_ID}/query").mock(
            side_effect=[httpx.Response(200, json=p) for p in pages]
        )
        rows = await real.call(
            "query_data_source",
            CREDS,
            {
                "data_source_id": DS_ID,
                "filter": flt,
                "sorts": sorts,
                "page_size": 2,
                "filter_properties": ["title", "abc"],
            },
        )
    assert [r["id"] for r in rows] == ["page-1", "page-2", "page-3"]
    assert rows[0]["title"] == "Row 1"
    assert rows[0]["properties"] == {"Name": "Row 1"}
    first, second = (json.loads(c.request.content) for c in route.calls)
    assert first == {"filter": flt, "sorts": sorts, "page_size": 2}
    assert second == {**first, "start_cursor": "cur-2"}
    request = route.calls[0].request
    assert request.method == "POST"
    assert request.headers["Notion-Version"] == NOTION_VERSION
    assert request.url.params.get_list("filter_properties") == ["title", "abc"]


async def test_query_data_source_raw_keeps_notion_objects(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.post(f"/v1/data_sources/{DS_ID}/query").respond(200, json=listing([page(1)]))
        rows = await real.call("query_data_source", CREDS, {"data_source_id": DS_ID, "raw": True})
    assert rows == [page(1)]


async def test_legacy_query_database_uses_old_version_header(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v1/databases/{DB_ID}/query").respond(200, json=listing([page(1)]))
        rows = await real.call("query_database", CREDS, {"database_id": DB_ID})
    request = route.calls.last.request
    assert request.headers["Notion-Version"] == "2022-06-28" == LEGACY_NOTION_VERSION
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {"page_size": 100}
    assert [r["id"] for r in rows] == ["page-1"]


async def test_list_data_sources_discovers_from_the_database(real: NotionProvider) -> None:
    database = {"object": "database", "id": DB_ID, "data_sources": [{"id": "a", "name": "A"}]}
    with respx.mock(base_url=REAL) as mock:
        route = mock.get(f"/v1/databases/{DB_ID}").respond(200, json=database)
        sources = await real.call("list_data_sources", CREDS, {"database_id": DB_ID})
    assert sources == [{"id": "a", "name": "A"}]
    assert route.calls.last.request.headers["Notion-Version"] == NOTION_VERSION


async def test_search_filters_data_sources_and_pages_through(real: NotionProvider) -> None:
    source = {
        "object": "data_source",
        "id": "ds-a",
        "title": rt("Posts"),
        "parent": {"type": "database_id", "database_id": DB_ID},
    }
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/search").mock(
            side_effect=[
                httpx.Response(200, json=listing([source], next_cursor="c2")),
                httpx.Response(200, json=listing([{**source, "id": "ds-b"}])),
            ]
        )
        results = await real.call("search", CREDS, {"query": "Posts", "object": "data_source"})
    assert [r["id"] for r in results] == ["ds-a", "ds-b"]
    assert results[0]["title"] == "Posts"
    assert results[0]["database_id"] == DB_ID
    bodies = [json.loads(c.request.content) for c in route.calls]
    assert bodies[0] == {
        "page_size": 100,
        "query": "Posts",
        "filter": {"property": "object", "value": "data_source"},
    }
    assert bodies[1]["start_cursor"] == "c2"


async def test_search_stops_at_max_results(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.post("/v1/search").respond(200, json=listing([page(1), page(2)], "more"))
        results = await real.call("search", CREDS, {"max_results": 1})
    assert [r["id"] for r in results] == ["page-1"]
    assert route.call_count == 1


async def test_get_page(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get(f"/v1/pages/{PAGE_ID}").respond(200, json=page(1))
        result = await real.call("get_page", CREDS, {"page_id": PAGE_ID})
    assert result["id"] == "page-1"
    assert route.calls.last.request.headers["Notion-Version"] == NOTION_VERSION


def _block(block_id: str, kind: str, text: str = "", *, children: bool = False) -> dict:
    return {
        "object": "block",
        "id": block_id,
        "type": kind,
        kind: {"rich_text": rt(text)} if text else {"title": "Sub"},
        "has_children": children,
    }


async def test_page_markdown_reads_children_recursively_and_paginated(
    real: NotionProvider,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        top = mock.get(f"/v1/blocks/{PAGE_ID}/children").mock(
            side_effect=[
                httpx.Response(
                    200,
                    json=listing(
                        [
                            _block("b1", "heading_1", "Title"),
                            _block("b2", "bulleted_list_item", "Parent", children=True),
                        ],
                        next_cursor="b3",
                    ),
                ),
                httpx.Response(
                    200,
                    json=listing(
                        [
                            _block("b3", "child_page", children=True),
                            _block("b4", "synced_block", children=False),
                        ]
                    ),
                ),
            ]
        )
        nested = mock.get("/v1/blocks/b2/children").respond(
            200, json=listing([_block("b21", "bulleted_list_item", "Child")])
        )
        result = await real.call("page_markdown", CREDS, {"page_id": PAGE_ID})
    assert result["markdown"] == "# Title\n\n- Parent\n  - Child\n\n[page: Sub]\n"
    assert [c.request.url.params.get("start_cursor") for c in top.calls] == [None, "b3"]
    assert all(c.request.url.params["page_size"] == "100" for c in top.calls)
    assert nested.call_count == 1  # child_page's children are another page: not read


async def test_incomplete_query_is_not_silently_truncated(real: NotionProvider) -> None:
    body = listing([page(1)])
    body["request_status"] = {
        "type": "incomplete",
        "incomplete_reason": "query_result_limit_reached",
    }
    with respx.mock(base_url=REAL) as mock:
        mock.post(f"/v1/data_sources/{DS_ID}/query").respond(200, json=body)
        with pytest.raises(BadRequest, match="query_result_limit_reached"):
            await real.call("query_data_source", CREDS, {"data_source_id": DS_ID})


async def test_send_data_with_a_data_source_id_falls_back_from_database(
    real: NotionProvider,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        database = mock.get(f"/v1/databases/{DS_ID}").respond(
            404, json=notion_error(404, "object_not_found")
        )
        query = mock.post(f"/v1/data_sources/{DS_ID}/query").respond(
            200, json=listing([page(1, Views={"id": "v", "type": "number", "number": 5})])
        )
        mock.get("/v1/blocks/page-1/children").respond(
            200, json=listing([_block("x", "paragraph", "Body text")])
        )
        items = await real.send_data(CREDS, DS_ID)
    assert database.call_count == 1
    assert query.call_count == 1
    assert items == [
        ContentItem(
            source="notion",
            id="page-1",
            title="Row 1",
            body="Body text\n",
            source_url="https://www.notion.so/Row-1",
            fields={"Name": "Row 1", "Views": 5},
            updated_at="2026-01-01T10:00:00Z",
        )
    ]


async def test_send_data_max_items_stops_paging_and_reads_only_kept_bodies(
    real: NotionProvider,
) -> None:
    """Three query pages of 100 are available; Notion ignores the smaller page_size here."""
    pages = [
        listing([page(n) for n in range(k * 100, (k + 1) * 100)], f"c{k + 1}" if k < 2 else None)
        for k in range(3)
    ]
    with respx.mock(base_url=REAL) as mock:
        query = mock.post(f"/v1/data_sources/{DS_ID}/query").mock(
            side_effect=[httpx.Response(200, json=body) for body in pages]
        )
        blocks = mock.get(url__regex=r"/v1/blocks/[^/]+/children").respond(
            200, json=listing([_block("x", "paragraph", "Body text")])
        )
        items = await real.send_data(CREDS, {"data_source_id": DS_ID, "max_items": 5})
    assert [i.id for i in items] == [f"page-{n}" for n in range(5)]
    assert all(i.body == "Body text\n" for i in items)
    assert query.call_count == 1
    assert json.loads(query.calls.last.request.content)["page_size"] == 5
    read = [c.request.url.path.split("/")[3] for c in blocks.calls]
    assert sorted(read) == sorted(i.id for i in items)


async def test_send_data_without_max_items_reads_every_page(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        query = mock.post(f"/v1/data_sources/{DS_ID}/query").mock(
            side_effect=[
                httpx.Response(200, json=listing([page(1), page(2)], "c2")),
                httpx.Response(200, json=listing([page(3)])),
            ]
        )
        items = await real.send_data(CREDS, {"data_source_id": DS_ID, "include_body": False})
    assert [i.id for i in items] == ["page-1", "page-2", "page-3"]
    assert query.call_count == 2
    assert json.loads(query.calls[0].request.content)["page_size"] == 100


def test_limit_query_adds_max_items_and_keeps_a_smaller_one(real: NotionProvider) -> None:
    assert real.limit_query(DS_ID, 10) == {"id": DS_ID, "max_items": 10}
    assert real.limit_query({"database_id": DB_ID, "max_items": 3}, 10)["max_items"] == 3
    assert real.limit_query({"database_id": DB_ID, "max_items": 30}, 10)["max_items"] == 10
    with pytest.raises(InvalidInput):
        real.limit_query({"database_id": DB_ID, "max_items": 0}, 10)


async def test_send_data_rejects_ambiguous_input(real: NotionProvider) -> None:
    with pytest.raises(InvalidInput):
        await real.send_data(CREDS, {"database_id": "a", "data_source_id": "b"})
    with pytest.raises(InvalidInput):
        await real.send_data(CREDS, {"data_source_id": "b", "legacy": True})


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "unauthorized", InvalidCredentials),
        (403, "restricted_resource", BadRequest),
        (404, "object_not_found", BadRequest),
        (400, "validation_error", BadRequest),
        (400, "invalid_json", BadRequest),
        (400, "invalid_request_url", BadRequest),
        (400, "invalid_request", BadRequest),
        (409, "conflict_error", Transient),
        (500, "internal_server_error", Transient),
        (503, "service_unavailable", Transient),
        (529, "service_overload", Transient),
        (504, "gateway_timeout", Transient),
    ],
)
async def test_error_codes_map_to_the_taxonomy(
    real: NotionProvider, status: int, code: str, expected: type[ProviderError]
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v1/pages/{PAGE_ID}").respond(status, json=notion_error(status, code, "why"))
        with pytest.raises(expected) as caught:
            await real.call("get_page", CREDS, {"page_id": PAGE_ID})
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.status == status
    assert "why" in caught.value.message
    assert_secret_free(caught.value)


@pytest.mark.parametrize("code", ["restricted_resource", "object_not_found"])
async def test_unshared_pages_explain_how_to_share(real: NotionProvider, code: str) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v1/pages/{PAGE_ID}").respond(404, json=notion_error(404, code))
        with pytest.raises(BadRequest, match="shared with the integration"):
            await real.call("get_page", CREDS, {"page_id": PAGE_ID})


async def test_rate_limit_carries_retry_after(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/users/me").respond(
            429, json=notion_error(429, "rate_limited"), headers={"Retry-After": "7"}
        )
        with pytest.raises(RateLimited) as caught:
            await real.check_connection(CREDS)
    assert caught.value.retry_after == 7
    assert_secret_free(caught.value)


async def test_rate_limit_is_waited_out_then_retried(settings: Settings) -> None:
    async with httpx.AsyncClient() as client:
        provider = get_provider(
            "notion", settings=settings.model_copy(update={"sandbox": False}), client=client
        )
        with respx.mock(base_url=REAL) as mock:
            route = mock.post(f"/v1/data_sources/{DS_ID}/query").mock(
                side_effect=[
                    httpx.Response(
                        429, json=notion_error(429, "rate_limited"), headers={"Retry-After": "0"}
                    ),
                    httpx.Response(200, json=listing([page(1)])),
                ]
            )
            rows = await provider.call("query_data_source", CREDS, {"data_source_id": DS_ID})
    assert route.call_count == 2  # a read-only query POST is safe to repeat
    assert len(rows) == 1


async def test_non_json_error_falls_back_to_status(real: NotionProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v1/users/me").respond(502, text="<html>bad gateway</html>")
        with pytest.raises(Transient):
            await real.check_connection(CREDS)


async def test_missing_key_is_invalid_credentials(real: NotionProvider) -> None:
    with pytest.raises(InvalidCredentials):
        await real.check_connection({})


# -- properties and DataFrames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "rich_text", "rich_text": rt("hi")}, "hi"),
        ({"type": "number", "number": 4.5}, 4.5),
        ({"type": "select", "select": {"name": "A"}}, "A"),
        ({"type": "select", "select": None}, None),
        ({"type": "status", "status": {"name": "Done"}}, "Done"),
        ({"type": "multi_select", "multi_select": [{"name": "a"}, {"name": "b"}]}, ["a", "b"]),
        ({"type": "date", "date": {"start": "2026-01-02", "end": None}}, "2026-01-02"),
        (
            {"type": "date", "date": {"start": "2026-01-02", "end": "2026-01-05"}},
            "2026-01-02/2026-01-05",
        ),
        ({"type": "checkbox", "checkbox": True}, True),
        ({"type": "url", "url": "https://x"}, "https://x"),
        ({"type": "people", "people": [{"id": "u1", "name": "Ann"}, {"id": "u2"}]}, ["Ann", "u2"]),
        ({"type": "relation", "relation": [{"id": "p1"}]}, ["p1"]),
        (
            {"type": "files", "files": [{"type": "external", "external": {"url": "https://f"}}]},
            ["https://f"],
        ),
        ({"type": "formula", "formula": {"type": "boolean", "boolean": False}}, False),
        ({"type": "rollup", "rollup": {"type": "number", "number": 3}}, 3),
        (
            {
                "type": "rollup",
                "rollup": {"type": "array", "array": [{"type": "title", "title": rt("x")}]},
            },
            ["x"],
        ),
        ({"type": "unique_id", "unique_id": {"prefix": "POST", "number": 7}}, "POST-7"),
        ({"type": "created_by", "created_by": {"id": "u1", "name": "Ann"}}, "Ann"),
    ],
)
def test_simplify_property(prop: dict, expected: Any) -> None:
    assert simplify_property(prop) == expected


def test_dataframe_has_proper_dtypes() -> None:
    def row(n: int, views: float | None, done: bool, when: str | None) -> dict:
        return page(
            n,
            Views={"type": "number", "number": views},
            Done={"type": "checkbox", "checkbox": done},
            Due={"type": "date", "date": {"start": when, "end": None} if when else None},
            Edited={"type": "last_edited_time", "last_edited_time": "2026-01-01T10:00:00.000Z"},
            Score={"type": "formula", "formula": {"type": "number", "number": n * 1.5}},
            Tags={"type": "multi_select", "multi_select": [{"name": "a"}]},
        )

    frame = pages_to_dataframe(
        [
            row(1, 10, True, "2026-02-01"),
            row(2, None, False, "2026-02-03T09:30:00.000+02:00"),
            row(3, 2.5, True, None),
        ]
    )
    assert list(frame.index) == ["page-1", "page-2", "page-3"]
    assert list(frame.columns) == ["Name", "Views", "Done", "Due", "Edited", "Score", "Tags"]
    assert pd.api.types.is_float_dtype(frame["Views"])
    assert frame["Views"].isna().tolist() == [False, True, False]
    assert frame["Done"].dtype == bool
    assert isinstance(frame["Due"].dtype, pd.DatetimeTZDtype)
    assert str(frame["Due"].dtype.tz) == "UTC"
    assert frame["Due"].iloc[1] == pd.Timestamp("2026-02-03T07:30:00Z")
    assert pd.isna(frame["Due"].iloc[2])
    assert isinstance(frame["Edited"].dtype, pd.DatetimeTZDtype)
    assert pd.api.types.is_float_dtype(frame["Score"])
    assert pd.api.types.is_string_dtype(frame["Name"])
    assert frame["Tags"].dtype == object


def test_dataframe_of_no_pages_is_empty() -> None:
    assert pages_to_dataframe([]).empty


# -- end to end against the sandbox ----------------------------------------------------------


async def test_sandbox_check_connection(sandbox: NotionProvider) -> None:
    account = await sandbox.check_connection(CREDS)
    assert account.id == sandbox_notion.WORKSPACE_ID
    assert account.name == "Sandbox Workspace"


async def test_sandbox_rejects_a_bad_key(sandbox: NotionProvider) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await sandbox.check_connection({"api_key": "invalid-key"})
    assert caught.value.code == "unauthorized"


async def test_sandbox_requires_the_version_header(sandbox_client: httpx.AsyncClient) -> None:
    response = await sandbox_client.get(
        "/notion/v1/users/me", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "missing_version"


async def test_sandbox_send_data_pages_through_many_rows(
    sandbox: NotionProvider, sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    seeded = await sandbox_client.post("/notion/_sandbox/seed", params={"rows": 230})
    assert seeded.status_code == 200
    items = await sandbox.send_data(
        CREDS, {"database_id": sandbox_notion.CONTENT_DATABASE_ID, "include_body": False}
    )
    assert len(items) == 230
    assert len({i.id for i in items}) == 230
    assert items[0].title == "Posts item 1"
    assert items[0].fields["Status"] == "In review"
    query = f"notion POST /notion/v1/data_sources/{sandbox_notion.CONTENT_DATA_SOURCE_ID}/query"
    assert sandbox_state.calls[query] == 3


def _block_reads(state: SandboxState) -> dict[str, int]:
    """Block-children requests the sandbox received, by block id."""
    prefix = "notion GET /notion/v1/blocks/"
    return {
        key.removeprefix(prefix).split("/")[0]: count
        for key, count in state.calls.items()
        if key.startswith(prefix)
    }


async def test_sandbox_send_data_max_items_queries_once_and_reads_five_bodies(
    sandbox: NotionProvider, sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    seeded = await sandbox_client.post("/notion/_sandbox/seed", params={"rows": 300})
    assert seeded.status_code == 200
    items = await sandbox.send_data(
        CREDS, {"data_source_id": sandbox_notion.CONTENT_DATA_SOURCE_ID, "max_items": 5}
    )
    assert [i.title for i in items] == [f"Posts item {n}" for n in range(1, 6)]
    assert all(i.body.startswith(f"# {i.title}\n") for i in items)
    query = f"notion POST /notion/v1/data_sources/{sandbox_notion.CONTENT_DATA_SOURCE_ID}/query"
    assert sandbox_state.calls[query] == 1
    reads = _block_reads(sandbox_state)
    all_pages = set(sandbox_state.store("notion")["pages"])
    assert {block for block in reads if block in all_pages} == {i.id for i in items}
    sandbox_state.calls.clear()
    await sandbox.call("page_markdown", CREDS, {"page_id": items[0].id})
    one_page = sum(_block_reads(sandbox_state).values())
    assert one_page > 1  # nested blocks are read too
    assert sum(reads.values()) == 5 * one_page  # and nothing for any other page


async def test_sandbox_database_max_items_stops_across_data_sources(
    sandbox: NotionProvider, sandbox_state: SandboxState
) -> None:
    prefix = "notion POST /notion/v1/data_sources/"
    active = f"{prefix}{sandbox_notion.ACTIVE_DATA_SOURCE_ID}/query"
    archive = f"{prefix}{sandbox_notion.ARCHIVE_DATA_SOURCE_ID}/query"
    request = {"database_id": sandbox_notion.CAMPAIGNS_DATABASE_ID, "include_body": False}
    items = await sandbox.send_data(CREDS, {**request, "max_items": 5})
    assert [i.title for i in items] == [f"Active item {n}" for n in range(1, 5)] + [
        "Archive item 1"
    ]
    assert (sandbox_state.calls[active], sandbox_state.calls[archive]) == (1, 1)
    sandbox_state.calls.clear()
    items = await sandbox.send_data(CREDS, {**request, "max_items": 4})
    assert len(items) == 4
    assert (sandbox_state.calls[active], sandbox_state.calls[archive]) == (1, 0)
    assert _block_reads(sandbox_state) == {}


async def test_sandbox_send_data_bodies_are_markdown(sandbox: NotionProvider) -> None:
    items = await sandbox.send_data(CREDS, sandbox_notion.ACTIVE_DATA_SOURCE_ID)
    assert len(items) == 4
    body = items[0].body
    assert body.startswith("# Active item 1\n")
    for expected in (
        "- [x] Write the script",
        "- Point A\n  - Nested",
        "1. First step\n2. Second step",
        "```python\nprint('hello')\n```",
        "| Channel | Reach |\n| --- | --- |",
        "<summary>More details</summary>\n\nHidden text",
        "> 💡 Remember the deadline",
        "> [unsupported block: unsupported]",
    ):
        assert expected in body
    assert items[0].updated_at is not None
    assert items[0].source_url is not None
    assert items[0].source_url.startswith("https://www.notion.so/")


async def test_sandbox_database_with_two_sources(sandbox: NotionProvider) -> None:
    sources = await sandbox.call(
        "list_data_sources", CREDS, {"database_id": sandbox_notion.CAMPAIGNS_DATABASE_ID}
    )
    assert [s["name"] for s in sources] == ["Active", "Archive"]
    items = await sandbox.send_data(
        CREDS, {"id": sandbox_notion.CAMPAIGNS_DATABASE_ID, "include_body": False}
    )
    assert len(items) == 7
    with pytest.raises(BadRequest, match="multiple data sources"):
        await sandbox.call(
            "query_database", CREDS, {"database_id": sandbox_notion.CAMPAIGNS_DATABASE_ID}
        )


async def test_sandbox_legacy_query(sandbox: NotionProvider) -> None:
    rows = await sandbox.call(
        "query_database",
        CREDS,
        {"database_id": sandbox_notion.CONTENT_DATABASE_ID, "page_size": 10, "raw": True},
    )
    assert len(rows) == 25
    assert rows[0]["parent"]["type"] == "database_id"


async def test_sandbox_filters_and_sorts_pass_through(sandbox: NotionProvider) -> None:
    rows = await sandbox.call(
        "query_data_source",
        CREDS,
        {
            "data_source_id": sandbox_notion.CONTENT_DATA_SOURCE_ID,
            "filter": {
                "and": [
                    {"property": "Featured", "checkbox": {"equals": True}},
                    {"property": "Views", "number": {"greater_than": 100}},
                ]
            },
            "sorts": [{"property": "Views", "direction": "descending"}],
        },
    )
    views = [r["properties"]["Views"] for r in rows]
    assert views == sorted(views, reverse=True)
    assert all(v > 100 for v in views)
    assert all(r["properties"]["Featured"] for r in rows)
    with pytest.raises(BadRequest, match="Nope"):
        await sandbox.call(
            "query_data_source",
            CREDS,
            {
                "data_source_id": sandbox_notion.CONTENT_DATA_SOURCE_ID,
                "filter": {"property": "Nope", "checkbox": {"equals": True}},
            },
        )


async def test_sandbox_search_and_page(sandbox: NotionProvider) -> None:
    sources = await sandbox.call("search", CREDS, {"object": "data_source"})
    assert {s["title"] for s in sources} == {"Posts", "Active", "Archive"}
    hits = await sandbox.call("search", CREDS, {"query": "Archive item 2", "object": "page"})
    assert [h["title"] for h in hits] == ["Archive item 2"]
    fetched = await sandbox.call("get_page", CREDS, {"page_id": hits[0]["id"]})
    assert fetched["id"] == hits[0]["id"]
    markdown = await sandbox.call("page_markdown", CREDS, {"page_id": hits[0]["id"]})
    assert markdown["markdown"].startswith("# Archive item 2")


async def test_sandbox_dataframe(sandbox: NotionProvider) -> None:
    frame = await sandbox.dataframe(CREDS, sandbox_notion.CONTENT_DATA_SOURCE_ID)
    assert len(frame) == 25
    assert pd.api.types.is_float_dtype(frame["Views"])
    assert frame["Featured"].dtype == bool
    assert isinstance(frame["Published"].dtype, pd.DatetimeTZDtype)
    assert frame["Published"].isna().any()
    assert pd.api.types.is_numeric_dtype(frame["Score"])


async def test_sandbox_unshared_database(sandbox: NotionProvider) -> None:
    with pytest.raises(BadRequest, match="shared with the integration") as caught:
        await sandbox.send_data(CREDS, {"database_id": sandbox_notion.RESTRICTED_DATABASE_ID})
    assert caught.value.code == "restricted_resource"
    with pytest.raises(BadRequest, match="shared with the integration"):
        await sandbox.send_data(CREDS, "00000000-dead-4000-8000-000000000000")


async def test_sandbox_injected_faults_use_notion_bodies(
    sandbox: NotionProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("notion")
    faults.update({"rate_limit_rate": 1.0, "retry_after_seconds": 30})
    with pytest.raises(RateLimited) as limited:
        await sandbox.check_connection(CREDS)
    assert limited.value.retry_after == 30
    assert limited.value.code == "rate_limited"
    faults.update({"rate_limit_rate": 0.0, "error_rate": 1.0, "error_status": 503})
    with pytest.raises(Transient) as failed:
        await sandbox.check_connection(CREDS)
    assert failed.value.code == "service_unavailable"
