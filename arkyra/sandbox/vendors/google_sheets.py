"""Google Sheets API v4 emulator (reference section 2): metadata, values.get, values.batchGet.

Paths are the real ones under the mount: ``/google-sheets/v4/spreadsheets/{id}...``. Every call
needs a bearer token minted by the ``google-oauth`` emulator with a Sheets or Drive scope, and the
spreadsheet must be shared with the token's service account (403 ``PERMISSION_DENIED`` if not,
404 ``NOT_FOUND`` for an unknown id). Trailing empty rows and cells are omitted and ``values`` is
absent for an empty range, as in the real API.

Seed spreadsheets from Python with :func:`seed_spreadsheet` or over HTTP with
``POST /google-sheets/_sandbox/spreadsheets`` (body ``{spreadsheet_id?, title?, shared_with:[...],
sheets?: {name: rows}, generate_rows?: N}``); ``generate_rows`` makes N rows of typed demo data
(dates, text, integers, money, booleans, sparse notes) of any size.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors.google_oauth import api_error_response, authorize, google_error

IDENTIFIER = "google-sheets"
SERVICE = "sheets.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive.readonly",
    "https://www.googleapis.com/auth/drive",
)
DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26
SERIAL_EPOCH = dt.date(1899, 12, 30)
GENERATED_HEADER = ["Date", "Title", "Views", "Revenue", "Published", "Notes"]

_CELL = re.compile(r"^([A-Za-z]*)(\d*)$")


# -- seeding -----------------------------------------------------------------------------------


def seed_spreadsheet(
    state: SandboxState,
    *,
    spreadsheet_id: str | None = None,
    title: str = "Sandbox spreadsheet",
    shared_with: list[str] | tuple[str, ...] = (),
    sheets: dict[str, list[list[Any]]] | None = None,
    generate_rows: int | None = None,
    seed: int = 7,
) -> str:
    """Store a spreadsheet (given rows, or ``generate_rows`` rows of demo data); return its id."""
    sheet_id = spreadsheet_id or "1" + secrets.token_urlsafe(30).replace("-", "x")
    if sheets is None:
        sheets = {"Sheet1": generate(generate_rows or 0, seed=seed)}
    tabs = []
    for index, (name, rows) in enumerate(sheets.items()):
        width = max((len(r) for r in rows), default=0)
        tabs.append(
            {
                "sheetId": 0 if index == 0 else 1000 + index,
                "title": name,
                "index": index,
                "rows": rows,
                "rowCount": max(DEFAULT_ROWS, len(rows)),
                "columnCount": max(DEFAULT_COLUMNS, width),
            }
        )
    state.store(IDENTIFIER).setdefault("spreadsheets", {})[sheet_id] = {
        "title": title,
        "locale": "en_US",
        "timeZone": "Etc/GMT",
        "shared_with": set(shared_with),
        "sheets": tabs,
    }
    return sheet_id


def generate(count: int, *, seed: int = 7) -> list[list[Any]]:
    """A header row plus ``count`` rows of typed demo data."""
    rng = random.Random(seed)
    start = dt.date(2026, 1, 1)
    rows: list[list[Any]] = [list(GENERATED_HEADER)]
    for i in range(count):
        row: list[Any] = [
            start + dt.timedelta(days=i % 3650),
            f"Post {i + 1}",
            rng.randint(0, 50_000),
            round(rng.uniform(0, 500), 2),
            rng.random() < 0.5,
        ]
        if i % 3 == 0:
            row.append(f"note {i + 1}")
        rows.append(row)
    return rows


# -- A1 notation -------------------------------------------------------------------------------


def column_number(letters: str) -> int:
    number = 0
    for char in letters.upper():
        number = number * 26 + (ord(char) - 64)
    return number


def column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _quote_sheet(title: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_]+", title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _split_sheet(a1: str) -> tuple[str | None, str]:
    """('Sheet', 'A1:B2') from "Sheet!A1:B2" or "'It''s'!A1:B2"; (None, cells) without a sheet."""
    if a1.startswith("'"):
        i = 1
        while i < len(a1):
            if a1[i] == "'" and a1[i + 1 : i + 2] == "'":
                i += 2
                continue
            if a1[i] == "'":
                rest = a1[i + 1 :]
                return a1[1:i].replace("''", "'"), rest[1:] if rest.startswith("!") else rest
            i += 1
        raise ValueError(a1)
    if "!" in a1:
        sheet, _, cells = a1.partition("!")
        return sheet, cells
    return None, a1


def _looks_like_cells(text: str) -> bool:
    parts = text.split(":")
    return 0 < len(parts) <= 2 and all(p and _CELL.match(p) for p in parts)


def resolve_range(book: dict[str, Any], a1: str) -> tuple[dict[str, Any], int, int, int, int]:
    """(sheet, first row, first column, last row, last column), 1-based and inclusive."""
    sheet_name, cells = _split_sheet(a1.strip())
    if sheet_name is None and not _looks_like_cells(cells):
        sheet_name, cells = cells, ""
    tabs = book["sheets"]
    if sheet_name is None:
        sheet = tabs[0]
    else:
        matches = [t for t in tabs if t["title"] == sheet_name]
        if not matches:
            raise ValueError(a1)
        sheet = matches[0]
    rows, cols = sheet["rowCount"], sheet["columnCount"]
    if not cells:
        return sheet, 1, 1, rows, cols
    start, _, end = cells.partition(":")
    end = end or start
    start_match, end_match = _CELL.match(start), _CELL.match(end)
    if not start_match or not end_match:
        raise ValueError(a1)
    c1 = column_number(start_match[1]) if start_match[1] else 1
    r1 = int(start_match[2]) if start_match[2] else 1
    c2 = column_number(end_match[1]) if end_match[1] else cols
    r2 = int(end_match[2]) if end_match[2] else rows
    if r1 < 1 or c1 < 1 or r2 < r1 or c2 < c1:
        raise ValueError(a1)
    return sheet, r1, c1, min(r2, rows), min(c2, cols)


# -- rendering ---------------------------------------------------------------------------------


def _render(value: Any, value_option: str, date_option: str) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        if value_option != "FORMATTED_VALUE" and date_option == "SERIAL_NUMBER":
            return (value - SERIAL_EPOCH).days
        return value.isoformat()
    if value_option == "FORMATTED_VALUE":
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return value


def value_range(book: dict[str, Any], a1: str, params: dict[str, str]) -> dict[str, Any]:
    """One ``ValueRange``: the cells of ``a1``, trailing empties omitted."""
    sheet, r1, c1, r2, c2 = resolve_range(book, a1)
    value_option = params.get("valueRenderOption", "FORMATTED_VALUE")
    date_option = params.get("dateTimeRenderOption", "SERIAL_NUMBER")
    major = params.get("majorDimension", "ROWS")
    grid: list[list[Any]] = []
    for row in sheet["rows"][r1 - 1 : r2]:
        cells = [_render(v, value_option, date_option) for v in row[c1 - 1 : c2]]
        while cells and cells[-1] == "":
            cells.pop()
        grid.append(cells)
    while grid and not grid[-1]:
        grid.pop()
    if major == "COLUMNS" and grid:
        width = max(len(r) for r in grid)
        grid = [[r[i] if i < len(r) else "" for r in grid] for i in range(width)]
        for column in grid:
            while column and column[-1] == "":
                column.pop()
    cell_range = f"{column_letters(c1)}{r1}:{column_letters(c2)}{r2}"
    result: dict[str, Any] = {
        "range": f"{_quote_sheet(sheet['title'])}!{cell_range}",
        "majorDimension": major,
    }
    if grid:
        result["values"] = grid
    return result


def _metadata(spreadsheet_id: str, book: dict[str, Any]) -> dict[str, Any]:
    return {
        "spreadsheetId": spreadsheet_id,
        "properties": {
            "title": book["title"],
            "locale": book["locale"],
            "timeZone": book["timeZone"],
        },
        "sheets": [
            {
                "properties": {
                    "sheetId": tab["sheetId"],
                    "title": tab["title"],
                    "index": tab["index"],
                    "sheetType": "GRID",
                    "gridProperties": {
                        "rowCount": tab["rowCount"],
                        "columnCount": tab["columnCount"],
                    },
                }
            }
            for tab in book["sheets"]
        ],
        "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
    }


# -- routes ------------------------------------------------------------------------------------


def routes(state: SandboxState) -> list[BaseRoute]:
    def load(request: Request) -> tuple[str, dict[str, Any]] | Response:
        token = authorize(state, request, SCOPES)
        if isinstance(token, Response):
            return token
        spreadsheet_id = request.path_params["spreadsheet_id"]
        book = state.store(IDENTIFIER).get("spreadsheets", {}).get(spreadsheet_id)
        if book is None:
            return google_error(404, "Requested entity was not found.")
        if token.client_email not in book["shared_with"]:
            return google_error(403, "The caller does not have permission")
        return spreadsheet_id, book

    def bad_range(a1: str) -> Response:
        return google_error(400, f"Unable to parse range: {a1}")

    async def get_spreadsheet(request: Request) -> Response:
        loaded = load(request)
        if isinstance(loaded, Response):
            return loaded
        return JSONResponse(_metadata(*loaded))

    async def get_values(request: Request) -> Response:
        loaded = load(request)
        if isinstance(loaded, Response):
            return loaded
        a1 = request.path_params["range"]
        try:
            body = value_range(loaded[1], a1, dict(request.query_params))
        except ValueError:
            return bad_range(a1)
        return JSONResponse(body)

    async def batch_get(request: Request) -> Response:
        loaded = load(request)
        if isinstance(loaded, Response):
            return loaded
        spreadsheet_id, book = loaded
        params = dict(request.query_params)
        ranges = request.query_params.getlist("ranges")
        try:
            value_ranges = [value_range(book, a1, params) for a1 in ranges]
        except ValueError as exc:
            return bad_range(str(exc))
        return JSONResponse({"spreadsheetId": spreadsheet_id, "valueRanges": value_ranges})

    async def seed(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        spreadsheet_id = seed_spreadsheet(
            state,
            spreadsheet_id=body.get("spreadsheet_id"),
            title=body.get("title") or "Sandbox spreadsheet",
            shared_with=list(body.get("shared_with") or []),
            sheets=body.get("sheets"),
            generate_rows=body.get("generate_rows"),
        )
        return JSONResponse({"spreadsheetId": spreadsheet_id}, status_code=201)

    return [
        Route("/v4/spreadsheets/{spreadsheet_id}", get_spreadsheet, methods=["GET"]),
        Route("/v4/spreadsheets/{spreadsheet_id}/values:batchGet", batch_get, methods=["GET"]),
        Route("/v4/spreadsheets/{spreadsheet_id}/values/{range:path}", get_values, methods=["GET"]),
        Route("/_sandbox/spreadsheets", seed, methods=["POST"]),
    ]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    return api_error_response(kind, status, retry_after, service=SERVICE)
