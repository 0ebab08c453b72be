"""Pagination written once, as strategies (cursor, offset, page number).

A strategy drives a ``fetch(params) -> body`` callable: it passes the paging parameters for the
next page (the caller decides whether they go in the query string or the JSON body) and reads the
next position from the parsed body. Nothing is silently truncated: a strategy that would exceed
``max_pages``, or a cursor that repeats, raises :class:`PaginationError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from arkyra.errors import ArkyraError

Fetch = Callable[[dict[str, Any]], Awaitable[Any]]
Extract = Callable[[Any], list[Any]]


class PaginationError(ArkyraError):
    """Paging could not finish without losing or repeating data."""


class Paginator(ABC):
    """Base strategy: subclasses yield the parsed body of each page in order."""

    def __init__(self, *, items: Extract, max_pages: int = 100_000) -> None:
        self.extract = items
        self.max_pages = max_pages

    @abstractmethod
    def pages(self, fetch: Fetch) -> AsyncIterator[Any]:
        """Yield every page's body."""

    async def items(self, fetch: Fetch) -> AsyncIterator[Any]:
        """Yield every item of every page."""
        async for body in self.pages(fetch):
            for item in self.extract(body):
                yield item

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
    ) -> None:
        super().__init__(items=items, max_pages=max_pages)
        self.cursor_param = cursor_param
        self.next_cursor = next_cursor

    async def pages(self, fetch: Fetch) -> AsyncIterator[Any]:
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
    """``offset`` + ``limit``; stops at ``total`` when the body gives one, else on a short page."""

    def __init__(
        self,
        *,
        limit: int,
        items: Extract,
        offset_param: str = "offset",
        limit_param: str | None = "limit",
        total: Callable[[Any], int | None] | None = None,
        max_pages: int = 100_000,
    ) -> None:
        super().__init__(items=items, max_pages=max_pages)
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.total = total

    async def pages(self, fetch: Fetch) -> AsyncIterator[Any]:
        offset = 0
        page_no = 0
        while True:
            page_no += 1
            self._check(page_no)
            params: dict[str, Any] = {self.offset_param: offset}
            if self.limit_param:
                params[self.limit_param] = self.limit
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
            if total is None and count < self.limit:
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
    ) -> None:
        super().__init__(items=items, max_pages=max_pages)
        self.page_param = page_param
        self.start = start
        self.has_more = has_more

    async def pages(self, fetch: Fetch) -> AsyncIterator[Any]:
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
