"""Pagination written once, as strategies (cursor, offset, page number).

A strategy drives a ``fetch(params) -> body`` callable: it passes the paging parameters for the
next page (the caller decides whether they go in the query string or the JSON body) and reads the
next position from the parsed body. Nothing is silently truncated: a strategy that would exceed
``max_pages``, or a cursor that repeats, raises :class:`PaginationError`.

``max_items`` is the one deliberate cut, asked for by the caller: once that many items are in
hand no further page is requested, and ``items``/``collect`` yield no more than that many.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from arkyra.errors import ArkyraError

Fetch = Callable[[dict[str, Any]], Awaitable[Any]]
Extract = Callable[[Any], list[Any]]


class PaginationError(ArkyraError):
    """Paging could not finish without losing or repeating data."""


class Paginator(ABC):
    """Base strategy: subclasses yield the parsed body of each page in order (``_bodies``)."""

    def __init__(
        self, *, items: Extract, max_pages: int = 100_000, max_items: int | None = None
    ) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be >= 1 (or None for every item)")
        self.extract = items
        self.max_pages = max_pages
        self.max_items = max_items

    @abstractmethod
    def _bodies(self, fetch: Fetch) -> AsyncIterator[Any]:
        """Yield every page's body, following the strategy's paging to the end."""

    async def pages(self, fetch: Fetch) -> AsyncIterator[Any]:
        """Yield each page's body; with ``max_items``, stop once that many items were seen."""
        seen = 0
        async with aclosing(self._bodies(fetch)) as bodies:
            async for body in bodies:
                yield body
                seen += len(self.extract(body))
                if self.max_items is not None and seen >= self.max_items:
                    return

    async def items(self, fetch: Fetch) -> AsyncIterator[Any]:
        """Yield every item of every page (at most ``max_items``)."""
        count = 0
        async with aclosing(self.pages(fetch)) as pages:
            async for body in pages:
                for item in self.extract(body):
                    yield item
                    count += 1
                    if self.max_items is not None and count >= self.max_items:
                        return

    async def collect(self, fetch: Fetch) -> list[Any]:
        return [item async for item in self.items(fetch)]

    def _check(self, page_no: int) -> None:
        if page_no > self.max_pages:
            raise PaginationError(
                f"more than {self.max_pages} pages; raise max_pages or narrow the query"
            )


class CursorPaginator(Paginator):
    """Opaque cursors / page tokens: Notion ``start_cursor``, Google ``pageToken``, ..."""

    def __init__(
        self,
        *,
        cursor_param: str,
        next_cursor: Callable[[Any], str | None],
        items: Extract,
        max_pages: int = 100_000,
        max_items: int | None = None,
    ) -> None:
        super().__init__(items=items, max_pages=max_pages, max_items=max_items)
        self.cursor_param = cursor_param
        self.next_cursor = next_cursor

    async def _bodies(self, fetch: Fetch) -> AsyncIterator[Any]:
        cursor: str | None = None
        seen: set[str] = set()
        page_no = 0
        while True:
            page_no += 1
            self._check(page_no)
            body = await fetch({self.cursor_param: cursor} if cursor else {})
            yield body
            cursor = self.next_cursor(body) or None
            if cursor is None:
                return
            if cursor in seen:
                raise PaginationError(f"the cursor {cursor[:16]!r}... came back twice")
            seen.add(cursor)


class OffsetPaginator(Paginator):
    """``offset`` + ``limit``; stops at ``total`` when the body gives one, else on a short page.

    With ``max_items`` the last request asks only for the items still wanted.
    """

    def __init__(
        self,
        *,
        limit: int,
        items: Extract,
        offset_param: str = "offset",
        limit_param: str | None = "limit",
        total: Callable[[Any], int | None] | None = None,
        max_pages: int = 100_000,
        max_items: int | None = None,
    ) -> None:
        super().__init__(items=items, max_pages=max_pages, max_items=max_items)
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.total = total

    async def _bodies(self, fetch: Fetch) -> AsyncIterator[Any]:
        offset = 0
        page_no = 0
        while True:
            page_no += 1
            self._check(page_no)
            params: dict[str, Any] = {self.offset_param: offset}
            size = self.limit
            if self.limit_param:
                if self.max_items is not None:  # ask only for what is still wanted
                    size = min(size, self.max_items - offset)
                params[self.limit_param] = size
            body = await fetch(params)
            yield body
            count = len(self.extract(body))
            offset += count
            total = self.total(body) if self.total else None
            if count == 0 and total is not None and offset < total:
                raise PaginationError(
                    f"an empty page at offset {offset} of {total}: the data changed while paging"
                )
            if count == 0 or (total is not None and offset >= total):
                return
            if total is None and count < size:
                return


class PageNumberPaginator(Paginator):
    """``page=1,2,...`` until ``has_more(body)`` says no (or a page comes back empty)."""

    def __init__(
        self,
        *,
        items: Extract,
        has_more: Callable[[Any], bool],
        page_param: str = "page",
        start: int = 1,
        max_pages: int = 100_000,
        max_items: int | None = None,
    ) -> None:
        super().__init__(items=items, max_pages=max_pages, max_items=max_items)
        self.page_param = page_param
        self.start = start
        self.has_more = has_more

    async def _bodies(self, fetch: Fetch) -> AsyncIterator[Any]:
        page = self.start
        page_no = 0
        while True:
            page_no += 1
            self._check(page_no)
            body = await fetch({self.page_param: page})
            yield body
            if not self.extract(body) or not self.has_more(body):
                return
            page += 1
