"""Pagination strategies: every page read, nothing truncated in silence, loops caught."""

from __future__ import annotations

from typing import Any

import pytest

from arkyra.http.paginate import (
    CursorPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PaginationError,
)

ITEMS = [f"item-{n}" for n in range(25)]


class Server:
    """Records every ``params`` a strategy sends and answers with ``respond(params)``."""

    def __init__(self, respond: Any) -> None:
        self.respond = respond
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, params: dict[str, Any]) -> Any:
        self.calls.append(dict(params))
        return self.respond(params)


def results(body: dict[str, Any]) -> list[Any]:
    return body["results"]


# -- cursor -------------------------------------------------------------------------------------


def cursor_server(items: list[str], size: int) -> Server:
    """Cursors are ``c<index>``; the last page has no cursor."""

    def respond(params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("start_cursor", "c0")[1:])
        end = start + size
        return {"results": items[start:end], "next_cursor": f"c{end}" if end < len(items) else None}

    return Server(respond)


def cursor_paginator(**kwargs: Any) -> CursorPaginator:
    return CursorPaginator(
        cursor_param="start_cursor",
        next_cursor=lambda body: body["next_cursor"],
        items=results,
        **kwargs,
    )


async def test_cursor_reads_every_page_in_order() -> None:
    server = cursor_server(ITEMS, 10)
    assert await cursor_paginator().collect(server) == ITEMS
    assert server.calls == [{}, {"start_cursor": "c10"}, {"start_cursor": "c20"}]


async def test_cursor_pages_yields_each_body() -> None:
    server = cursor_server(ITEMS, 10)
    pages = [body async for body in cursor_paginator().pages(server)]
    assert [len(page["results"]) for page in pages] == [10, 10, 5]


async def test_an_empty_cursor_ends_paging() -> None:
    server = Server(lambda params: {"results": ["only"], "next_cursor": ""})
    assert await cursor_paginator().collect(server) == ["only"]
    assert len(server.calls) == 1


async def test_a_repeated_cursor_is_an_error_not_a_loop() -> None:
    server = Server(lambda params: {"results": ["same"], "next_cursor": "abc"})
    with pytest.raises(PaginationError, match="came back twice"):
        await cursor_paginator().collect(server)
    assert server.calls == [{}, {"start_cursor": "abc"}]


async def test_a_cursor_that_cycles_back_is_caught() -> None:
    cycle = {None: "a", "a": "b", "b": "a"}
    server = Server(lambda params: {"results": [1], "next_cursor": cycle[params.get("c")]})
    paginator = CursorPaginator(
        cursor_param="c", next_cursor=lambda body: body["next_cursor"], items=results
    )
    with pytest.raises(PaginationError):
        await paginator.collect(server)
    assert len(server.calls) == 3


async def test_cursor_over_max_pages_raises_instead_of_truncating() -> None:
    server = cursor_server(ITEMS, 10)
    with pytest.raises(PaginationError, match="more than 2 pages"):
        await cursor_paginator(max_pages=2).collect(server)
    assert len(server.calls) == 2


async def test_cursor_exactly_at_max_pages_is_fine() -> None:
    assert await cursor_paginator(max_pages=3).collect(cursor_server(ITEMS, 10)) == ITEMS


# -- offset -------------------------------------------------------------------------------------


def offset_server(items: list[str], *, with_total: bool, cap: int | None = None) -> Server:
    def respond(params: dict[str, Any]) -> dict[str, Any]:
        offset = params.get("offset", params.get("start", 0))
        size = params.get("limit", 10)
        if cap is not None:
            size = min(size, cap)
        body: dict[str, Any] = {"results": items[offset : offset + size]}
        if with_total:
            body["total"] = len(items)
        return body

    return Server(respond)


def offset_paginator(*, with_total: bool, **kwargs: Any) -> OffsetPaginator:
    total = (lambda body: body["total"]) if with_total else None
    return OffsetPaginator(limit=10, items=results, total=total, **kwargs)


async def test_offset_with_total_stops_at_the_total() -> None:
    server = offset_server(ITEMS, with_total=True)
    assert await offset_paginator(with_total=True).collect(server) == ITEMS
    assert server.calls == [
        {"offset": 0, "limit": 10},
        {"offset": 10, "limit": 10},
        {"offset": 20, "limit": 10},
    ]


async def test_offset_with_total_needs_no_extra_request_on_an_exact_multiple() -> None:
    server = offset_server(ITEMS[:20], with_total=True)
    assert await offset_paginator(with_total=True).collect(server) == ITEMS[:20]
    assert len(server.calls) == 2


async def test_offset_with_total_keeps_going_when_the_server_caps_page_size() -> None:
    server = offset_server(ITEMS[:12], with_total=True, cap=5)
    assert await offset_paginator(with_total=True).collect(server) == ITEMS[:12]
    assert [call["offset"] for call in server.calls] == [0, 5, 10]


async def test_offset_without_total_stops_on_a_short_page() -> None:
    server = offset_server(ITEMS, with_total=False)
    assert await offset_paginator(with_total=False).collect(server) == ITEMS
    assert [call["offset"] for call in server.calls] == [0, 10, 20]


async def test_offset_without_total_stops_on_an_empty_page() -> None:
    server = offset_server(ITEMS[:20], with_total=False)
    assert await offset_paginator(with_total=False).collect(server) == ITEMS[:20]
    assert [call["offset"] for call in server.calls] == [0, 10, 20]


async def test_offset_with_custom_parameter_names() -> None:
    server = offset_server(ITEMS, with_total=False)
    paginator = OffsetPaginator(limit=10, items=results, offset_param="start", limit_param=None)
    assert await paginator.collect(server) == ITEMS
    assert server.calls == [{"start": 0}, {"start": 10}, {"start": 20}]


@pytest.mark.parametrize("with_total", [True, False])
async def test_offset_over_max_pages_raises_instead_of_truncating(with_total: bool) -> None:
    server = offset_server(ITEMS, with_total=with_total)
    with pytest.raises(PaginationError, match="more than 2 pages"):
        await offset_paginator(with_total=with_total, max_pages=2).collect(server)
    assert len(server.calls) == 2


# -- page number --------------------------------------------------------------------------------


def page_server(items: list[str], size: int, *, start: int = 1) -> Server:
    def respond(params: dict[str, Any]) -> dict[str, Any]:
        index = params["page"] - start
        chunk = items[index * size : (index + 1) * size]
        return {"results": chunk, "has_more": (index + 1) * size < len(items)}

    return Server(respond)


def page_paginator(**kwargs: Any) -> PageNumberPaginator:
    return PageNumberPaginator(items=results, has_more=lambda body: body["has_more"], **kwargs)


async def test_page_numbers_count_from_one() -> None:
    server = page_server(ITEMS, 10)
    assert await page_paginator().collect(server) == ITEMS
    assert server.calls == [{"page": 1}, {"page": 2}, {"page": 3}]


async def test_page_numbers_can_count_from_zero() -> None:
    server = page_server(ITEMS, 10, start=0)
    assert await page_paginator(start=0).collect(server) == ITEMS
    assert server.calls == [{"page": 0}, {"page": 1}, {"page": 2}]


async def test_an_empty_page_ends_paging_even_if_has_more_says_yes() -> None:
    server = Server(lambda params: {"results": [] if params["page"] > 2 else [params["page"]],
                                    "has_more": True})  # fmt: skip
    assert await page_paginator().collect(server) == [1, 2]
    assert len(server.calls) == 3


async def test_page_numbers_over_max_pages_raise_instead_of_truncating() -> None:
    server = Server(lambda params: {"results": [params["page"]], "has_more": True})
    with pytest.raises(PaginationError, match="more than 5 pages"):
        await page_paginator(max_pages=5).collect(server)
    assert len(server.calls) == 5


async def test_items_streams_across_pages() -> None:
    seen = [item async for item in page_paginator().items(page_server(ITEMS, 7))]
    assert seen == ITEMS


async def test_offset_with_total_refuses_to_end_short_of_the_total() -> None:
    """The body says 30 items; the server runs dry after 20."""
    server = Server(lambda params: {"results": ITEMS[:20][params["offset"] :][:10], "total": 30})
    with pytest.raises(PaginationError):
        await offset_paginator(with_total=True).collect(server)


# -- max_items: stop fetching once enough items are in hand -------------------------------------


@pytest.mark.parametrize(("max_items", "calls"), [(3, 1), (10, 1), (11, 2), (25, 3), (99, 3)])
async def test_cursor_max_items_fetches_only_the_pages_needed(max_items: int, calls: int) -> None:
    server = cursor_server(ITEMS, 10)
    assert await cursor_paginator(max_items=max_items).collect(server) == ITEMS[:max_items]
    assert len(server.calls) == calls


async def test_pages_stop_at_the_page_that_completes_max_items() -> None:
    server = cursor_server(ITEMS, 10)
    pages = [body async for body in cursor_paginator(max_items=12).pages(server)]
    assert [len(page["results"]) for page in pages] == [10, 10]
    assert len(server.calls) == 2


async def test_offset_max_items_asks_only_for_what_is_still_wanted() -> None:
    server = offset_server(ITEMS, with_total=True)
    paginator = offset_paginator(with_total=True, max_items=15)
    assert await paginator.collect(server) == ITEMS[:15]
    assert server.calls == [{"offset": 0, "limit": 10}, {"offset": 10, "limit": 5}]


async def test_offset_max_items_without_total_is_not_mistaken_for_a_short_page() -> None:
    server = offset_server(ITEMS, with_total=False)
    paginator = offset_paginator(with_total=False, max_items=4)
    assert await paginator.collect(server) == ITEMS[:4]
    assert server.calls == [{"offset": 0, "limit": 4}]


async def test_offset_max_items_beyond_the_data_reads_everything_once() -> None:
    server = offset_server(ITEMS, with_total=False)
    assert await offset_paginator(with_total=False, max_items=100).collect(server) == ITEMS
    assert [call["offset"] for call in server.calls] == [0, 10, 20]


async def test_offset_max_items_without_a_limit_parameter_keeps_the_server_page_size() -> None:
    server = offset_server(ITEMS, with_total=False)
    paginator = OffsetPaginator(
        limit=10, items=results, offset_param="start", limit_param=None, max_items=12
    )
    assert await paginator.collect(server) == ITEMS[:12]
    assert server.calls == [{"start": 0}, {"start": 10}]


async def test_page_numbers_max_items() -> None:
    server = page_server(ITEMS, 7)
    assert await page_paginator(max_items=8).collect(server) == ITEMS[:8]
    assert server.calls == [{"page": 1}, {"page": 2}]


async def test_max_items_reached_on_the_last_allowed_page_is_not_a_max_pages_error() -> None:
    server = cursor_server(ITEMS, 10)
    assert await cursor_paginator(max_pages=1, max_items=10).collect(server) == ITEMS[:10]


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items"):
        cursor_paginator(max_items=0)
