"""Google Sheets: request shapes, A1 chunking, typed DataFrames, errors with the sharing hint,
and end-to-end reads against the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pandas as pd
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from arkyra.config import Settings
from arkyra.errors import BadRequest, InvalidCredentials, InvalidInput, RateLimited, Transient
from arkyra.providers import ThirdPartyProvider, catalogue_entry, get_provider, provider_class
from arkyra.providers.content.google_sheets import (
    A1Range,
    GoogleSheetsProvider,
    infer_column,
    parse_a1,
)
from arkyra.providers.content.items import ContentItem
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import google_oauth
from arkyra.sandbox.vendors import google_sheets as sandbox_sheets
from tests.providers.google_fixtures import (
    google_error,
    google_provider_fixtures,
    register_service_account,
    service_account_fixtures,
    token_mock_fixture,
)

REAL = "https://sheets.googleapis.com"
EMAIL = "sheets-reader@arkyra-test.iam.gserviceaccount.com"
SHEET = "1AbCdEfGhIjK"

rsa_key, key_json, creds = service_account_fixtures(EMAIL, "kid-sheets", {"spreadsheet_id": SHEET})
fresh_token_cache, real = google_provider_fixtures("google-sheets", GoogleSheetsProvider)
mock = token_mock_fixture("ya29.sheets", base_url=REAL)


def test_registration() -> None:
    cls = provider_class("google-sheets")
    entry = catalogue_entry(cls)
    assert entry["category"] == "content"
    assert [(f["name"], f["kind"], f["required"]) for f in entry["fields"]] == [
        ("service_account_json", "json", True),
        ("spreadsheet_id", "text", True),
    ]
    assert {"values", "batch_get"} <= set(entry["functions"])
    assert cls.default_base_url == REAL


# -- A1 notation and dtype inference -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sheet1!A1:F500", A1Range("Sheet1", "A", 1, "F", 500)),
        ("'My ''big'' sheet'!B2:C", A1Range("My 'big' sheet", "B", 2, "C", None)),
        ("Sheet1", A1Range("Sheet1", None, None, None, None)),
        ("A1:B2", A1Range(None, "A", 1, "B", 2)),
        ("Data!A:D", A1Range("Data", "A", None, "D", None)),
        ("C7", A1Range(None, "C", 7, "C", 7)),
    ],
)
def test_parse_a1(text: str, expected: A1Range) -> None:
    assert parse_a1(text) == expected


def test_parse_a1_rejects_garbage() -> None:
    with pytest.raises(InvalidInput):
        parse_a1("Sheet1!A1:B2:C3")


def test_infer_column_dtypes() -> None:
    assert infer_column([1, 2, "", 4]).dtype == "Int64"
    assert infer_column(["1", "2", None]).dtype == "Int64"
    assert infer_column([1, 2.5, 3]).dtype == "float64"
    assert infer_column([True, False, None]).dtype == "boolean"
    assert infer_column(["TRUE", "FALSE"]).dtype == "boolean"
    iso = infer_column(["2026-01-05", "2026-02-01", ""])
    assert pd.api.types.is_datetime64_any_dtype(iso)
    assert iso.iloc[0] == pd.Timestamp("2026-01-05")
    assert pd.isna(iso.iloc[2])
    us = infer_column(["1/5/2026", "12/31/2026"])
    assert us.iloc[0] == pd.Timestamp("2026-01-05")
    european = infer_column(["5/1/2026", "31/12/2026"])
    assert european.iloc[0] == pd.Timestamp("2026-01-05")
    for not_dates in (["2026-01-05", "soon"], ["1/5/2026", "2026-01-05"]):
        assert infer_column(not_dates).dtype == "string"
    assert infer_column(["00123", "00456"]).dtype == "string"  # ids keep their zeros
    assert infer_column(["a", 1]).dtype == "string"


# -- request shapes ----------------------------------------------------------------------------


async def test_check_connection_reads_sheet_metadata(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.get(f"/v4/spreadsheets/{SHEET}").respond(
        200, json={"spreadsheetId": SHEET, "properties": {"title": "Content plan"}}
    )
    account = await real.check_connection(creds)
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer ya29.sheets"
    assert request.url.params["fields"] == "spreadsheetId,properties.title"
    assert account.id == EMAIL
    assert account.name == "Content plan (arkyra-test)"


async def test_spreadsheet_url_is_accepted_as_id(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    route = mock.get(f"/v4/spreadsheets/{SHEET}").respond(200, json={"properties": {}})
    url = f"https://docs.google.com/spreadsheets/d/{SHEET}/edit#gid=0"
    await real.check_connection({**creds, "spreadsheet_id": url})
    assert route.called


async def test_bounded_range_is_one_values_get(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    body = {
        "range": "'Q1 plan'!A1:D4",
        "majorDimension": "ROWS",
        "values": [
            ["Date", "Title", "Views", "Score"],
            ["2026-01-05", "Launch", 1200, 4.5],
            [],
            ["2026-01-07", "Recap", "", 3],
        ],
    }
    route = mock.get(url__regex=r"/v4/spreadsheets/1AbCdEfGhIjK/values/.*").respond(200, json=body)
    frame = await real.call("values", creds, {"range": "'Q1 plan'!A1:D4"})
    request = route.calls.last.request
    assert unquote(request.url.raw_path.decode().split("?")[0]).endswith("/values/'Q1 plan'!A1:D4")
    assert "%20" in request.url.raw_path.decode()
    assert request.url.params["valueRenderOption"] == "UNFORMATTED_VALUE"
    assert request.url.params["dateTimeRenderOption"] == "FORMATTED_STRING"
    assert request.url.params["majorDimension"] == "ROWS"
    assert list(frame.columns) == ["Date", "Title", "Views", "Score"]
    assert list(frame.index) == [2, 4]  # sheet row numbers; the blank row 3 is dropped
    assert pd.api.types.is_datetime64_any_dtype(frame["Date"])
    assert frame["Title"].dtype == "string"
    assert frame["Views"].dtype == "Int64"
    assert pd.isna(frame.loc[4, "Views"])
    assert frame["Score"].dtype == "float64"
    assert frame.attrs["sheet"] == "Q1 plan"


async def test_unbounded_range_is_read_in_bounded_chunks(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    meta = {
        "spreadsheetId": SHEET,
        "properties": {"title": "Plan"},
        "sheets": [
            {"properties": {"sheetId": 0, "title": "Data", "index": 0,
                            "gridProperties": {"rowCount": 25, "columnCount": 3}}}
        ],
    }  # fmt: skip
    meta_route = mock.get(f"/v4/spreadsheets/{SHEET}").respond(200, json=meta)

    def chunks(request: httpx.Request) -> httpx.Response:
        ranges = request.url.params.get_list("ranges")
        value_ranges = []
        for a1 in ranges:
            start = int(a1.split("!A")[1].split(":")[0])
            rows = [["n", "label"]] if start == 1 else []
            first = start + (1 if start == 1 else 0)
            rows += [[i, f"row {i}"] for i in range(first, min(start + 10, 21))]
            value_ranges.append({"range": a1, "majorDimension": "ROWS", "values": rows})
        return httpx.Response(200, json={"spreadsheetId": SHEET, "valueRanges": value_ranges})

    batch = mock.get(f"/v4/spreadsheets/{SHEET}/values:batchGet").mock(side_effect=chunks)
    frame = await real.call("values", creds, {"range": "Data", "chunk_rows": 10})
    assert meta_route.called
    assert batch.call_count == 1
    assert batch.calls.last.request.url.params.get_list("ranges") == [
        "Data!A1:C10",
        "Data!A11:C20",
        "Data!A21:C25",
    ]
    assert len(frame) == 19  # rows 2..20: every data row, no cap
    assert frame["n"].tolist() == list(range(2, 21))
    assert list(frame.index) == list(range(2, 21))


async def test_batch_get_returns_a_frame_per_range(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    body = {
        "spreadsheetId": SHEET,
        "valueRanges": [
            {"range": "A!A1:B3", "values": [["k", "v"], ["a", 1], ["b", 2]]},
            {"range": "B!A1:A2", "values": [["only"], ["x"]]},
        ],
    }
    route = mock.get(f"/v4/spreadsheets/{SHEET}/values:batchGet").respond(200, json=body)
    frames = await real.call("batch_get", creds, {"ranges": ["A!A1:B3", "B!A1:A2"]})
    assert route.calls.last.request.url.params.get_list("ranges") == ["A!A1:B3", "B!A1:A2"]
    assert frames["A!A1:B3"]["v"].tolist() == [1, 2]
    assert frames["B!A1:A2"]["only"].tolist() == ["x"]


# -- errors ------------------------------------------------------------------------------------


async def test_not_shared_403_names_the_service_account(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    mock.get(f"/v4/spreadsheets/{SHEET}").respond(
        403, json=google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
    )
    with pytest.raises(InvalidCredentials) as info:
        await real.check_connection(creds)
    assert f"share the sheet with {EMAIL}" in str(info.value)
    assert info.value.code == "PERMISSION_DENIED"


async def test_unknown_sheet_404_is_bad_request_with_the_hint(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    mock.get(f"/v4/spreadsheets/{SHEET}").respond(
        404, json=google_error(404, "NOT_FOUND", "Requested entity was not found.")
    )
    with pytest.raises(BadRequest) as info:
        await real.check_connection(creds)
    assert f"share the sheet with {EMAIL}" in str(info.value)


@pytest.mark.parametrize(
    ("status", "grpc", "error_class"),
    [
        (429, "RESOURCE_EXHAUSTED", RateLimited),
        (503, "UNAVAILABLE", Transient),
        (500, "INTERNAL", Transient),
        (400, "INVALID_ARGUMENT", BadRequest),
    ],
)
async def test_value_errors(
    real: GoogleSheetsProvider,
    mock: respx.MockRouter,
    creds: dict[str, str],
    status: int,
    grpc: str,
    error_class: type[Exception],
) -> None:
    mock.get(url__regex=r"/values/").respond(status, json=google_error(status, grpc, "boom"))
    with pytest.raises(error_class) as info:
        await real.call("values", creds, {"range": "S!A1:B2"})
    assert "share the sheet" not in str(info.value)


DATA_META = {
    "spreadsheetId": SHEET,
    "properties": {"title": "Plan"},
    "sheets": [
        {"properties": {"sheetId": 0, "title": "Data", "index": 0,
                        "gridProperties": {"rowCount": 30, "columnCount": 3}}}
    ],
}  # fmt: skip


def values_answer(rows_by_range: dict[str, list[list[Any]]]) -> Callable[..., httpx.Response]:
    """Answers values.get with the rows stored for the requested A1 range."""

    def answer(request: httpx.Request) -> httpx.Response:
        a1 = unquote(request.url.raw_path.decode().split("?")[0].rsplit("/values/", 1)[1])
        return httpx.Response(200, json={"range": a1, "values": rows_by_range[a1]})

    return answer


def requested_ranges(route: respx.Route) -> list[str]:
    return [
        unquote(c.request.url.raw_path.decode().split("?")[0].rsplit("/values/", 1)[1])
        for c in route.calls
    ]


async def test_send_data_max_items_reads_header_and_max_items_rows(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    mock.get(f"/v4/spreadsheets/{SHEET}").respond(200, json=DATA_META)
    rows = [["n", "title"], *([i, f"row {i}"] for i in range(2, 5))]
    route = mock.get(url__regex=r"/values/").mock(side_effect=values_answer({"Data!A1:C4": rows}))
    items = await real.send_data(creds, {"max_items": 3})
    assert requested_ranges(route) == ["Data!A1:C4"]
    assert [i.title for i in items] == ["row 2", "row 3", "row 4"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"range": "Data!B5:C", "max_items": 10}, "Data!B5:C15"),
        ({"range": "Data!A1:C3", "max_items": 10}, "Data!A1:C3"),
        ({"range": "Data", "max_items": 2, "header": False}, "Data!A1:C2"),
    ],
)
async def test_send_data_max_items_range_is_bounded(
    real: GoogleSheetsProvider,
    mock: respx.MockRouter,
    creds: dict[str, str],
    options: dict[str, Any],
    expected: str,
) -> None:
    mock.get(f"/v4/spreadsheets/{SHEET}").respond(200, json=DATA_META)
    route = mock.get(url__regex=r"/values/").respond(200, json={"range": expected})
    assert await real.send_data(creds, options) == []
    assert requested_ranges(route)[0] == expected


async def test_send_data_max_items_reads_on_when_blank_rows_leave_it_short(
    real: GoogleSheetsProvider, mock: respx.MockRouter, creds: dict[str, str]
) -> None:
    mock.get(f"/v4/spreadsheets/{SHEET}").respond(200, json=DATA_META)
    first = [["n"], [2], [], [4]]  # header, a row, a blank row, a row
    rest = [[], [6], [7]]
    route = mock.get(url__regex=r"/values/").mock(
        side_effect=values_answer({"Data!A1:C4": first, "Data!A5:C30": rest})
    )
    items = await real.send_data(creds, {"max_items": 3})
    assert requested_ranges(route) == ["Data!A1:C4", "Data!A5:C30"]
    assert [i.fields["n"] for i in items] == [2, 4, 6]
    assert [i.id.rsplit("!", 1)[1] for i in items] == ["2", "4", "6"]


def test_limit_query_adds_max_items_and_keeps_a_smaller_one(real: GoogleSheetsProvider) -> None:
    assert real.limit_query(None, 10) == {"max_items": 10}
    assert real.limit_query("Data!A:C", 10) == {"range": "Data!A:C", "max_items": 10}
    assert real.limit_query({"range": "Data", "max_items": 4}, 10)["max_items"] == 4
    with pytest.raises(InvalidInput):
        real.limit_query({"max_items": 0}, 10)


async def test_missing_spreadsheet_id_is_invalid_input(
    real: GoogleSheetsProvider, creds: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput) as info:
        await real.check_connection({"service_account_json": creds["service_account_json"]})
    assert "spreadsheet_id" in info.value.errors


# -- end to end against the sandbox ------------------------------------------------------------


@pytest.fixture
def sandbox_creds(
    sandbox_state: SandboxState, rsa_key: rsa.RSAPrivateKey, key_json: dict[str, str]
) -> dict[str, str]:
    """A registered service account (the test's key) and a generated sheet shared with it."""
    register_service_account(sandbox_state, rsa_key, key_json)
    sheet = sandbox_sheets.seed_spreadsheet(
        sandbox_state, title="Posts", shared_with=[EMAIL], generate_rows=12
    )
    return {"spreadsheet_id": sheet}


@pytest.fixture
def sandbox(provider_factory: Callable[[str], ThirdPartyProvider]) -> GoogleSheetsProvider:
    provider = provider_factory("google-sheets")
    assert isinstance(provider, GoogleSheetsProvider)
    return provider


async def test_sandbox_check_and_typed_values(
    sandbox: GoogleSheetsProvider, creds: dict[str, str], sandbox_creds: dict[str, str]
) -> None:
    full = {**creds, **sandbox_creds}
    account = await sandbox.check_connection(full)
    assert (account.id, account.name) == (EMAIL, "Posts (arkyra-test)")
    frame = await sandbox.call("values", full, {"range": "Sheet1"})
    assert len(frame) == 12
    assert list(frame.columns) == sandbox_sheets.GENERATED_HEADER
    assert pd.api.types.is_datetime64_any_dtype(frame["Date"])
    assert frame["Views"].dtype == "Int64"
    assert frame["Revenue"].dtype == "float64"
    assert frame["Published"].dtype == "boolean"
    assert frame["Notes"].dtype == "string"
    assert frame["Notes"].isna().sum() == 8  # the sparse column's trailing cells are omitted


async def test_sandbox_formatted_values_are_still_typed(
    sandbox: GoogleSheetsProvider, creds: dict[str, str], sandbox_creds: dict[str, str]
) -> None:
    params = {"range": "Sheet1!A1:E6", "value_render_option": "FORMATTED_VALUE"}
    frame = await sandbox.call("values", {**creds, **sandbox_creds}, params)
    assert frame["Views"].dtype == "Int64"
    assert frame["Published"].dtype == "boolean"
    assert len(frame) == 5


async def test_sandbox_large_sheet_has_no_row_cap(
    sandbox: GoogleSheetsProvider,
    sandbox_state: SandboxState,
    creds: dict[str, str],
    sandbox_creds: dict[str, str],
) -> None:
    big = sandbox_sheets.seed_spreadsheet(
        sandbox_state, shared_with=[EMAIL], generate_rows=2_600, seed=3
    )
    frame = await sandbox.call(
        "values", {**creds, "spreadsheet_id": big}, {"range": "Sheet1!A:C", "chunk_rows": 1000}
    )
    assert len(frame) == 2_600
    assert frame["Title"].iloc[-1] == "Post 2600"
    assert list(frame.columns) == ["Date", "Title", "Views"]


async def test_sandbox_send_data_gives_one_item_per_row(
    sandbox: GoogleSheetsProvider, creds: dict[str, str], sandbox_creds: dict[str, str]
) -> None:
    items = await sandbox.send_data({**creds, **sandbox_creds}, None)
    assert len(items) == 12
    first = items[0]
    assert isinstance(first, ContentItem)
    assert first.source == "google-sheets"
    assert first.id == f"{sandbox_creds['spreadsheet_id']}:Sheet1!2"
    assert first.title == "Post 1"
    assert isinstance(first.fields["Views"], int)
    assert isinstance(first.fields["Revenue"], float)
    assert isinstance(first.fields["Published"], bool)
    assert first.source_url is not None
    assert first.source_url.endswith("#gid=0&range=2:2")
    json.dumps(first.model_dump(mode="json"))  # JSON-safe for the API and Prefect


def sheet_reads(state: SandboxState, spreadsheet_id: str) -> dict[str, int]:
    """Requests the sandbox received for one spreadsheet: 'metadata' or the values range."""
    prefix = f"google-sheets GET /google-sheets/v4/spreadsheets/{spreadsheet_id}"
    reads: dict[str, int] = {}
    for key, count in state.calls.items():
        if key.startswith(prefix):
            rest = key.removeprefix(prefix).removeprefix("/values/").removeprefix("/")
            reads[rest or "metadata"] = count
    return reads


async def test_sandbox_send_data_max_items_asks_for_a_bounded_range(
    sandbox: GoogleSheetsProvider,
    sandbox_state: SandboxState,
    creds: dict[str, str],
    sandbox_creds: dict[str, str],
) -> None:
    sheet = sandbox_creds["spreadsheet_id"]
    items = await sandbox.send_data({**creds, **sandbox_creds}, {"max_items": 10})
    assert [i.title for i in items] == [f"Post {n}" for n in range(1, 11)]
    assert sheet_reads(sandbox_state, sheet) == {"metadata": 1, "Sheet1!A1:Z11": 1}


async def test_sandbox_send_data_without_max_items_reads_every_row_once(
    sandbox: GoogleSheetsProvider,
    sandbox_state: SandboxState,
    creds: dict[str, str],
    sandbox_creds: dict[str, str],  # registers the service account
) -> None:
    big = sandbox_sheets.seed_spreadsheet(
        sandbox_state, shared_with=[EMAIL], generate_rows=2_600, seed=3
    )
    items = await sandbox.send_data(
        {**creds, "spreadsheet_id": big}, {"range": "Sheet1!A:C", "chunk_rows": 1000}
    )
    assert len(items) == 2_600  # no hidden row cap
    assert items[-1].title == "Post 2600"
    assert sheet_reads(sandbox_state, big) == {"metadata": 1, "values:batchGet": 1}


async def test_sandbox_unshared_sheet_explains_sharing(
    sandbox: GoogleSheetsProvider,
    sandbox_state: SandboxState,
    creds: dict[str, str],
    sandbox_creds: dict[str, str],
) -> None:
    private = sandbox_sheets.seed_spreadsheet(sandbox_state, shared_with=["someone@else.test"])
    with pytest.raises(InvalidCredentials, match=f"share the sheet with {EMAIL}"):
        await sandbox.check_connection({**creds, "spreadsheet_id": private})
    with pytest.raises(BadRequest, match="share the sheet"):
        await sandbox.check_connection({**creds, "spreadsheet_id": "does-not-exist"})


async def test_sandbox_unknown_sheet_tab_is_bad_request(
    sandbox: GoogleSheetsProvider, creds: dict[str, str], sandbox_creds: dict[str, str]
) -> None:
    with pytest.raises(BadRequest, match="Unable to parse range"):
        await sandbox.call("values", {**creds, **sandbox_creds}, {"range": "Nope!A1:B2"})


async def test_sandbox_rejects_missing_and_foreign_tokens(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState, sandbox_creds: dict[str, str]
) -> None:
    path = f"/google-sheets/v4/spreadsheets/{sandbox_creds['spreadsheet_id']}"
    missing = await sandbox_client.get(path)
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    forged = await sandbox_client.get(path, headers={"Authorization": "Bearer ya29.forged"})
    assert forged.status_code == 401
    token, _ = google_oauth.issue_token(
        sandbox_state, EMAIL, ["https://www.googleapis.com/auth/analytics.readonly"]
    )
    wrong_scope = await sandbox_client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert wrong_scope.status_code == 403
    assert wrong_scope.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


async def test_sandbox_injected_faults_map_to_the_taxonomy(
    settings: Settings,
    sandbox_client: httpx.AsyncClient,
    sandbox_state: SandboxState,
    creds: dict[str, str],
    sandbox_creds: dict[str, str],
) -> None:
    one_try = settings.model_copy(update={"http_max_attempts": 1})
    provider = get_provider("google-sheets", settings=one_try, client=sandbox_client)
    full = {**creds, **sandbox_creds}
    faults = sandbox_state.faults_for("google-sheets")
    faults.rate_limit_rate, faults.retry_after_seconds = 1.0, 0.5
    with pytest.raises(RateLimited) as info:
        await provider.check_connection(full)
    assert info.value.retry_after == 0.5
    faults.rate_limit_rate, faults.error_rate = 0.0, 1.0
    with pytest.raises(Transient):
        await provider.check_connection(full)
