"""Google Sheets v4 (reference sections 0 and 2): rows of a spreadsheet as typed DataFrames.

Reads use bounded A1 ranges. The API has no pagination, so a range without an end row (``Sheet1``,
``A:F``, ``A5:F``) or one longer than ``chunk_rows`` is split into row chunks up to the sheet's
grid size (from the metadata) and read with ``values.get`` (one chunk) or ``values:batchGet``
(several). Nothing is capped silently: every row of the range comes back. The one cut is asked
for: ``send_data`` with ``max_items`` requests only the header row and ``max_items`` rows (and
the rest of the range only when blank rows left it short).

The first row of a range is the header; columns get dtypes from their values: integers
``Int64``, other numbers ``float64``, booleans ``boolean``, date-like text ``datetime64`` (only
when every value in the column is date-like), anything else ``string``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import pandas as pd
from pydantic import Field

from arkyra.errors import InvalidInput
from arkyra.providers.base import AccountInfo, CredentialField, ExposedInput, expose, third_party
from arkyra.providers.content.google_auth import (
    SERVICE_ACCOUNT_FIELD,
    SHEETS_READONLY,
    GoogleServiceAccountProvider,
)
from arkyra.providers.content.items import ContentItem

SPREADSHEET_URL = "https://docs.google.com/spreadsheets/d/{id}/edit"
METADATA_FIELDS = (
    "spreadsheetId,properties(title,locale,timeZone),"
    "sheets.properties(sheetId,title,index,gridProperties)"
)
CHUNKS_PER_BATCH = 10
TITLE_COLUMNS = ("title", "name", "headline", "subject")

ValueRender = Literal["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"]
DateRender = Literal["SERIAL_NUMBER", "FORMATTED_STRING"]

_SPREADSHEET_IN_URL = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_CELLS = re.compile(r"^([A-Za-z]{0,3})(\d*)(?::([A-Za-z]{0,3})(\d*))?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# -- input models ------------------------------------------------------------------------------


class ReadOptions(ExposedInput):
    spreadsheet_id: str | None = Field(
        default=None, description="Overrides the connected spreadsheet (id or URL)."
    )
    header: bool = Field(default=True, description="The first row of each range holds names.")
    value_render_option: ValueRender = "UNFORMATTED_VALUE"
    date_time_render_option: DateRender = "FORMATTED_STRING"
    chunk_rows: int = Field(default=5000, ge=1, le=100_000, description="Rows per request.")


class ValuesInput(ReadOptions):
    range: str = Field(
        min_length=1,
        max_length=500,
        description=(
            "A1 notation, e.g. 'Sheet1!A1:F500', 'Sheet1' or 'A:F'. Quote sheet names that "
            "look like cells ('Q1')."
        ),
    )


class BatchGetInput(ReadOptions):
    ranges: list[str] = Field(min_length=1, max_length=100)


# -- A1 notation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class A1Range:
    """A parsed A1 range; missing parts mean 'to the edge of the grid'."""

    sheet: str | None
    first_column: str | None
    first_row: int | None
    last_column: str | None
    last_row: int | None

    @property
    def needs_grid(self) -> bool:
        return self.last_row is None or self.last_column is None


def parse_a1(text: str) -> A1Range:
    """Parse ``Sheet!A1:B2``, ``'My sheet'!A:B``, ``A1:B2``, ``Sheet1``; ``InvalidInput`` else."""
    text = text.strip()
    sheet: str | None = None
    cells = text
    if text.startswith("'"):
        match = re.match(r"^'((?:[^']|'')+)'(?:!(.*))?$", text)
        if not match:
            raise _bad_range(text)
        sheet, cells = match[1].replace("''", "'"), match[2] or ""
    elif "!" in text:
        sheet, _, cells = text.partition("!")
    elif not _CELLS.match(text):
        sheet, cells = text, ""
    if not cells:
        return A1Range(sheet, None, None, None, None)
    match = _CELLS.match(cells)
    if not match:
        raise _bad_range(text)
    c1, r1, c2, r2 = match.groups()
    if c2 is None and r2 is None:  # a single cell
        c2, r2 = c1, r1
    return A1Range(
        sheet=sheet,
        first_column=c1.upper() or None,
        first_row=int(r1) if r1 else None,
        last_column=(c2 or "").upper() or None,
        last_row=int(r2) if r2 else None,
    )


def _bad_range(text: str) -> InvalidInput:
    return InvalidInput(f"not an A1 range: {text!r}", {"range": "expected e.g. Sheet1!A1:F500"})


def quote_sheet(title: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_]+", title):
        return title
    return "'" + title.replace("'", "''") + "'"


def column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def sheet_of(returned_range: str) -> str:
    """The sheet title in a range the API returned (``'My sheet'!A1:B2`` -> ``My sheet``)."""
    parsed = parse_a1(returned_range)
    return parsed.sheet or ""


# -- DataFrames --------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        leading_zero = len(text) > 1 and text[0] == "0" and text[1] != "."
        if _PLAIN_NUMBER.match(text) and not leading_zero:
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().upper() in ("TRUE", "FALSE"):
        return value.strip().upper() == "TRUE"
    return None


def _date_format(values: list[Any]) -> str | None:
    """The one date style every value follows (ISO or d/m/y vs m/d/y), else ``None``."""
    if not all(isinstance(v, str) for v in values):
        return None
    texts = [v.strip() for v in values]
    if all(_ISO_DATE.match(t) for t in texts):
        return "ISO8601"
    slashed = [_SLASH_DATE.match(t) for t in texts]
    if all(slashed):
        day_first = any(int(m[1]) > 12 for m in slashed if m)
        return "%d/%m/%Y" if day_first else "%m/%d/%Y"
    return None


def infer_column(values: list[Any]) -> pd.Series:
    """A Series with the dtype the column's non-blank values agree on."""
    cleaned = [None if _blank(v) else v for v in values]
    present = [v for v in cleaned if v is not None]
    if not present:
        return pd.Series(cleaned, dtype="object")
    if all(_as_bool(v) is not None for v in present):
        return pd.Series([None if v is None else _as_bool(v) for v in cleaned], dtype="boolean")
    numbers = [_as_number(v) for v in present]
    if all(n is not None for n in numbers):
        converted = [None if v is None else _as_number(v) for v in cleaned]
        if all(float(n).is_integer() and abs(n) < 2**53 for n in numbers):  # type: ignore[arg-type]
            return pd.Series([None if n is None else int(n) for n in converted], dtype="Int64")
        return pd.Series([float("nan") if n is None else float(n) for n in converted])
    date_format = _date_format(present)
    if date_format is not None:
        texts = pd.Series([None if v is None else str(v).strip() for v in cleaned], dtype=object)
        parsed = pd.to_datetime(texts, format=date_format, errors="coerce")
        if parsed.notna().sum() == len(present):
            return parsed
    return pd.Series([None if v is None else str(v) for v in cleaned], dtype="string")


def column_names(header: list[Any], width: int) -> list[str]:
    """Header cells as unique names; blanks become ``column_<n>``, repeats get ``_2``, ``_3``."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for index in range(width):
        raw = header[index] if index < len(header) else None
        name = str(raw).strip() if not _blank(raw) else f"column_{index + 1}"
        count = seen.get(name, 0) + 1
        seen[name] = count
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def rows_to_frame(rows: list[tuple[int, list[Any]]], *, header: bool) -> pd.DataFrame:
    """A DataFrame indexed by sheet row number; fully empty rows are dropped."""
    head: list[Any] = []
    if header and rows:
        head, rows = rows[0][1], rows[1:]
    rows = [(n, r) for n, r in rows if any(not _blank(v) for v in r)]
    width = max([len(head), *(len(r) for _, r in rows)], default=0)
    names = column_names(head, width)
    index = pd.Index([n for n, _ in rows], name="row", dtype="int64")
    columns = {
        name: infer_column([r[i] if i < len(r) else None for _, r in rows])
        for i, name in enumerate(names)
    }
    return pd.DataFrame({name: columns[name].set_axis(index) for name in names}, index=index)


def plain(value: Any) -> Any:
    """A JSON-friendly Python value from a DataFrame cell."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


# -- the provider ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """One bounded request: the A1 text and the sheet row its first value row stands for."""

    a1: str
    first_row: int


@third_party(
    identifier="google-sheets",
    title="Google Sheets",
    description=(
        "Rows of a Google spreadsheet as content items or typed tables, read with a "
        "service account. Share the sheet with the service account's email (Viewer)."
    ),
    category="content",
    fields=[
        CredentialField(
            SERVICE_ACCOUNT_FIELD,
            "Service account key (JSON)",
            "json",
            help="The key file of a Google Cloud service account with the Sheets API enabled.",
        ),
        CredentialField(
            "spreadsheet_id",
            "Spreadsheet ID or URL",
            "text",
            required=True,
            help=(
                "Required: the check reads this sheet's metadata. The ID is the part after "
                "/d/ in the sheet's URL; share the sheet with the service account's email."
            ),
        ),
    ],
)
class GoogleSheetsProvider(GoogleServiceAccountProvider):
    """Reads spreadsheet values with a service account (read-only scope)."""

    default_base_url = "https://sheets.googleapis.com"
    scopes: ClassVar[tuple[str, ...]] = (SHEETS_READONLY,)

    def sharing_hint(self, client_email: str, status_name: str) -> str | None:
        if status_name == "PERMISSION_DENIED":
            return f"share the sheet with {client_email} (Viewer is enough)"
        if status_name == "NOT_FOUND":
            return f"check the spreadsheet id, and share the sheet with {client_email}"
        return None

    # -- the contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """Mint a token, then read the configured sheet's title (proves key and sharing)."""
        account = self.service_account(credentials)
        spreadsheet_id = self._spreadsheet_id(credentials, None)
        body = await self.google_json(
            "GET",
            f"/v4/spreadsheets/{quote(spreadsheet_id, safe='')}",
            credentials,
            params={"fields": "spreadsheetId,properties.title"},
        )
        title = (body.get("properties") or {}).get("title") or spreadsheet_id
        name = credentials.get("label") or f"{title} ({account.display_name})"
        return AccountInfo(id=account.client_email, name=name)

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> list[ContentItem]:
        """One ContentItem per row; ``data`` is a range, or ``{"range": ..., ...}``, or None.

        With ``max_items`` only the first rows are requested; without it, every row.
        """
        options = _options_from(data)
        spreadsheet_id = self._spreadsheet_id(credentials, options.spreadsheet_id)
        metadata = await self.metadata(credentials, spreadsheet_id)
        a1 = options.range or quote_sheet(_first_sheet(metadata)["title"])
        values_input = ValuesInput(**options.model_dump(exclude={"range", "max_items"}), range=a1)
        if options.max_items is None:
            frames = await self._read(credentials, [a1], values_input, metadata=metadata)
            frame = frames[a1]
        else:
            frame = await self._first_rows(credentials, values_input, options.max_items, metadata)
        sheet_title = frame.attrs.get("sheet") or _first_sheet(metadata)["title"]
        gid = _sheet_gid(metadata, sheet_title)
        return [
            _row_item(spreadsheet_id, sheet_title, gid, int(row), record)
            for row, record in zip(frame.index, frame.to_dict(orient="records"), strict=True)
        ]

    def limit_query(self, data: Any, max_items: int) -> dict[str, Any]:
        """``data`` (a ``send_data`` input) asking for at most ``max_items`` rows."""
        options = _options_from(data)
        wanted = min(max_items, options.max_items or max_items)
        return options.model_copy(update={"max_items": wanted}).model_dump(exclude_defaults=True)

    # -- exposed functions ---------------------------------------------------------------------

    @expose
    async def values(self, credentials: Mapping[str, str], params: ValuesInput) -> pd.DataFrame:
        """Read one A1 range (values.get) as a typed DataFrame indexed by sheet row."""
        frames = await self._read(credentials, [params.range], params)
        return frames[params.range]

    @expose
    async def batch_get(
        self, credentials: Mapping[str, str], params: BatchGetInput
    ) -> dict[str, pd.DataFrame]:
        """Read several A1 ranges (values:batchGet); one typed DataFrame per range."""
        return await self._read(credentials, params.ranges, params)

    # -- reading -------------------------------------------------------------------------------

    async def metadata(self, credentials: Mapping[str, str], spreadsheet_id: str) -> dict:
        """Title, locale and every sheet's grid size."""
        return await self.google_json(
            "GET",
            f"/v4/spreadsheets/{quote(spreadsheet_id, safe='')}",
            credentials,
            params={"fields": METADATA_FIELDS, "includeGridData": "false"},
        )

    async def _read(
        self,
        credentials: Mapping[str, str],
        ranges: list[str],
        options: ReadOptions,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, pd.DataFrame]:
        """Every row of each range; ``metadata`` when the caller has it already (saves a read)."""
        spreadsheet_id = self._spreadsheet_id(credentials, options.spreadsheet_id)
        parsed = [parse_a1(text) for text in ranges]
        if metadata is None and (
            any(p.needs_grid for p in parsed)
            or any((p.last_row or 0) - (p.first_row or 1) + 1 > options.chunk_rows for p in parsed)
        ):
            metadata = await self.metadata(credentials, spreadsheet_id)
        plans = [_plan(p, metadata, options.chunk_rows) for p in parsed]
        chunks = [chunk for plan in plans for chunk in plan]
        results = await self._fetch_chunks(credentials, spreadsheet_id, chunks, options)
        frames: dict[str, pd.DataFrame] = {}
        position = 0
        for text, plan in zip(ranges, plans, strict=True):
            bodies = results[position : position + len(plan)]
            position += len(plan)
            frame = rows_to_frame(_numbered_rows(plan, bodies), header=options.header)
            returned = bodies[0].get("range", text) if bodies else text
            frame.attrs.update(
                {"spreadsheet_id": spreadsheet_id, "range": text, "sheet": sheet_of(returned)}
            )
            frames[text] = frame
        return frames

    async def _first_rows(
        self,
        credentials: Mapping[str, str],
        params: ValuesInput,
        max_items: int,
        metadata: Mapping[str, Any],
    ) -> pd.DataFrame:
        """The first ``max_items`` rows of ``params.range``: one bounded request for the header
        and ``max_items`` rows; the rest of the range only if blank rows left it short."""
        spreadsheet_id = self._spreadsheet_id(credentials, params.spreadsheet_id)
        a1 = parse_a1(params.range)
        title, row_count, _ = _grid(metadata, a1.sheet)
        first, end = a1.first_row or 1, a1.last_row or row_count
        bounded_end = min(end, first + max_items - (0 if params.header else 1))
        rows: list[tuple[int, list[Any]]] = []
        frame = rows_to_frame(rows, header=params.header)
        for start, stop in ((first, bounded_end), (bounded_end + 1, end)):
            if start > stop or len(frame) >= max_items:
                break
            window = A1Range(title, a1.first_column, start, a1.last_column, stop)
            plan = _plan(window, metadata, params.chunk_rows)
            rows += _numbered_rows(
                plan, await self._fetch_chunks(credentials, spreadsheet_id, plan, params)
            )
            frame = rows_to_frame(rows, header=params.header)
        frame = frame.iloc[:max_items]
        frame.attrs.update(
            {"spreadsheet_id": spreadsheet_id, "range": params.range, "sheet": title}
        )
        return frame

    async def _fetch_chunks(
        self,
        credentials: Mapping[str, str],
        spreadsheet_id: str,
        chunks: list[_Chunk],
        options: ReadOptions,
    ) -> list[dict[str, Any]]:
        base = f"/v4/spreadsheets/{quote(spreadsheet_id, safe='')}/values"
        render = {
            "majorDimension": "ROWS",
            "valueRenderOption": options.value_render_option,
            "dateTimeRenderOption": options.date_time_render_option,
        }
        if len(chunks) == 1:
            path = f"{base}/{quote(chunks[0].a1, safe='!:$')}"
            return [await self.google_json("GET", path, credentials, params=render)]
        bodies: list[dict[str, Any]] = []
        for start in range(0, len(chunks), CHUNKS_PER_BATCH):
            group = chunks[start : start + CHUNKS_PER_BATCH]
            params = {**render, "ranges": [c.a1 for c in group]}
            body = await self.google_json("GET", f"{base}:batchGet", credentials, params=params)
            value_ranges = body.get("valueRanges") or []
            value_ranges += [{}] * (len(group) - len(value_ranges))
            bodies.extend(value_ranges)
        return bodies

    def _spreadsheet_id(self, credentials: Mapping[str, str], override: str | None) -> str:
        raw = (override or credentials.get("spreadsheet_id") or "").strip()
        if not raw:
            raise InvalidInput(
                "google-sheets needs a spreadsheet id", {"spreadsheet_id": "is required"}
            )
        match = _SPREADSHEET_IN_URL.search(raw)
        return match[1] if match else raw


class _SendOptions(ReadOptions):
    range: str | None = None
    max_items: int | None = Field(
        default=None, ge=1, description="Read only the header and this many rows."
    )


def _options_from(data: Any) -> _SendOptions:
    if data is None:
        return _SendOptions()
    if isinstance(data, str):
        return _SendOptions(range=data)
    if isinstance(data, Mapping):
        try:
            return _SendOptions.model_validate(dict(data))
        except ValueError as exc:
            raise InvalidInput(f"invalid google-sheets read options: {exc}") from None
    raise InvalidInput("google-sheets send_data takes a range, a dict of options, or None")


def _first_sheet(metadata: Mapping[str, Any]) -> dict[str, Any]:
    sheets = metadata.get("sheets") or []
    if not sheets:
        raise InvalidInput("the spreadsheet has no sheets")
    return min(sheets, key=lambda s: s["properties"].get("index", 0))["properties"]


def _sheet_gid(metadata: Mapping[str, Any], title: str) -> int | None:
    for sheet in metadata.get("sheets") or []:
        if sheet["properties"].get("title") == title:
            return sheet["properties"].get("sheetId")
    return None


def _grid(metadata: Mapping[str, Any] | None, sheet: str | None) -> tuple[str, int, int]:
    """(sheet title, row count, column count) of ``sheet`` (the first sheet when ``None``)."""
    if metadata is None:
        raise AssertionError("metadata is needed for an unbounded range")  # pragma: no cover
    if sheet is None:
        props = _first_sheet(metadata)
    else:
        found = [s["properties"] for s in metadata.get("sheets") or []]
        props = next((p for p in found if p.get("title") == sheet), None)  # type: ignore[assignment]
        if props is None:
            raise InvalidInput(f"no sheet named {sheet!r}", {"range": "unknown sheet"})
    grid = props.get("gridProperties") or {}
    return props["title"], int(grid.get("rowCount", 1000)), int(grid.get("columnCount", 26))


def _plan(a1: A1Range, metadata: Mapping[str, Any] | None, chunk_rows: int) -> list[_Chunk]:
    """Split ``a1`` into bounded chunks of at most ``chunk_rows`` rows."""
    if metadata is None:
        prefix = f"{quote_sheet(a1.sheet)}!" if a1.sheet else ""
        first, last = a1.first_row or 1, a1.last_row or 1
        text = f"{prefix}{a1.first_column or 'A'}{first}:{a1.last_column}{last}"
        return [_Chunk(text, first)]
    title, row_count, column_count = _grid(metadata, a1.sheet)
    first_row = a1.first_row or 1
    last_row = a1.last_row or row_count
    first_column = a1.first_column or "A"
    last_column = a1.last_column or column_letters(column_count)
    prefix = f"{quote_sheet(title)}!"
    return [
        _Chunk(
            f"{prefix}{first_column}{start}:{last_column}{min(start + chunk_rows - 1, last_row)}",
            start,
        )
        for start in range(first_row, last_row + 1, chunk_rows)
    ]


def _numbered_rows(plan: list[_Chunk], bodies: list[dict[str, Any]]) -> list[tuple[int, list[Any]]]:
    """``(sheet row number, values)`` for every row the chunks' answers hold."""
    return [
        (chunk.first_row + offset, list(values))
        for chunk, body in zip(plan, bodies, strict=True)
        for offset, values in enumerate(body.get("values") or [])
    ]


def _row_item(
    spreadsheet_id: str, sheet: str, gid: int | None, row: int, record: dict[str, Any]
) -> ContentItem:
    fields = {str(k): plain(v) for k, v in record.items()}
    title_key = next((k for k in fields if k.strip().lower() in TITLE_COLUMNS), None)
    title = fields.get(title_key) if title_key else None
    if title is None:
        title = next((v for v in fields.values() if isinstance(v, str) and v), f"Row {row}")
    url = SPREADSHEET_URL.format(id=spreadsheet_id)
    if gid is not None:
        url += f"#gid={gid}&range={row}:{row}"
    body = "\n".join(f"{k}: {v}" for k, v in fields.items() if v is not None)
    return ContentItem(
        source="google-sheets",
        id=f"{spreadsheet_id}:{sheet}!{row}",
        title=str(title),
        body=body,
        source_url=url,
        fields=fields,
    )
