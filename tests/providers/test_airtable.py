"""Airtable: request shapes, error mapping, offset paging, the per-base and per-token limiters,
typed records."""

from __future__ import annotations

import asyncio
import json
import time
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
    QuotaExhausted,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider, provider_class
from arkyra.providers.content.airtable import (
    AirtableProvider,
    AirtableRecord,
    SlidingWindowLimiter,
    records_to_dataframe,
    reserve_together,
)
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors import airtable as sandbox_airtable

REAL = "https://api.airtable.com"
KEY = "patTEST123.abcdef0123456789"
OTHER_KEY = "patOTHER45.abcdef0123456789"
CREDS = {"api_key": KEY}
BASE = "appAAAAAAAAAAAAAA"
TABLE = "tblBBBBBBBBBBBBBB"
SCHEMA = {
    "id": TABLE,
    "name": "Posts",
    "primaryFieldId": "fld1",
    "fields": [
        {"id": "fld1", "name": "Name", "type": "singleLineText"},
        {"id": "fld2", "name": "Notes", "type": "multilineText"},
        {"id": "fld3", "name": "Views", "type": "number"},
        {"id": "fld4", "name": "Done", "type": "checkbox"},
        {"id": "fld5", "name": "Due", "type": "dateTime"},
        {"id": "fld6", "name": "Rating", "type": "rating"},
        {
            "id": "fld7",
            "name": "Ratio",
            "type": "formula",
            "options": {"result": {"type": "percent"}},
        },
        {"id": "fld8", "name": "Tags", "type": "multipleSelects"},
        {"id": "fld9", "name": "Edited", "type": "lastModifiedTime"},
    ],
    "views": [],
}


def record(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"rec{n:014d}", "createdTime": "2026-01-01T00:00:00.000Z", "fields": fields}


def assert_secret_free(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def max_in_window(stamps: list[float], window: float) -> int:
    """The most timestamps found in any half-open window of ``window`` seconds."""
    stamps = sorted(stamps)
    return max(
        (sum(1 for t in stamps if start <= t < start + window - 1e-9) for start in stamps),
        default=0,
    )


@pytest.fixture
async def real(settings: Settings) -> AsyncIterator[AirtableProvider]:
    """The provider at the real Airtable URL (respx intercepts), one attempt, no waiting."""
    real_settings = settings.model_copy(update={"sandbox": False, "http_max_attempts": 1})
    async with httpx.AsyncClient() as client:
        provider = get_provider("airtable", settings=real_settings, client=client)
        assert isinstance(provider, AirtableProvider)
        provider.rate_limiter = SlidingWindowLimiter(10_000, 1.0)
        provider.token_limiter = SlidingWindowLimiter(10_000, 1.0)
        yield provider


@pytest.fixture
def sandbox(provider_factory: Callable[[str], ThirdPartyProvider]) -> AirtableProvider:
    provider = provider_factory("airtable")
    assert isinstance(provider, AirtableProvider)
    provider.rate_limiter = SlidingWindowLimiter(5, 1.0)  # fresh: no waits left by other tests
    provider.token_limiter = SlidingWindowLimiter(50, 1.0)
    return provider


def test_registration() -> None:
    cls = provider_class("airtable")
    assert cls.category == "content"
    assert [f.name for f in cls.fields] == ["api_key"]
    assert cls.default_base_url == REAL
    assert {"bases", "tables", "list_records"} <= set(cls.exposed)


# -- the limiter -----------------------------------------------------------------------------


async def test_limiter_allows_five_per_second_per_key() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    granted: list[float] = []
    for _ in range(12):
        await limiter.acquire("appA")
        granted.append(clock.now)
    assert granted == [100.0] * 5 + [101.0] * 5 + [102.0] * 2
    assert max_in_window(granted, 1.0) == 5
    await limiter.acquire("appB")  # another base has its own budget
    assert clock.now == 102.0


async def test_limiter_counts_a_sliding_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 1.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire("k")
    clock.now += 0.6
    await limiter.acquire("k")
    await limiter.acquire("k")  # must wait until 1 s after the first grant
    assert clock.now == pytest.approx(101.0)
    await limiter.acquire("k")  # and now 1 s after the second
    assert clock.now == pytest.approx(101.6)


async def test_limiter_holds_under_concurrency() -> None:
    limiter = SlidingWindowLimiter(5, 0.1)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire("appA")
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(15)))
    assert max(stamps) - min(stamps) >= 0.19  # three windows' worth of grants
    assert max_in_window(stamps, 0.09) <= 5  # a little slack for timer jitter


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1.0)


async def test_long_pagination_never_exceeds_five_per_second(real: AirtableProvider) -> None:
    clock = FakeClock()
    real.rate_limiter = SlidingWindowLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    real.token_limiter = SlidingWindowLimiter(50, 1.0, clock=clock, sleep=clock.sleep)
    seen: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now)
        page = int(request.url.params.get("offset", "itr0").removeprefix("itr"))
        body: dict[str, Any] = {"records": [record(page)]}
        if page < 11:
            body["offset"] = f"itr{page + 1}"
        return httpx.Response(200, json=body)

    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/{BASE}/{TABLE}").mock(side_effect=answer)
        records = await real.records(CREDS, _list_input())
    assert len(records) == 12
    assert max_in_window(seen, 1.0) == 5
    assert seen[-1] - seen[0] >= 2.0


def test_one_token_across_many_bases_is_held_to_the_token_rate() -> None:
    clock = FakeClock()
    bases = SlidingWindowLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    tokens = SlidingWindowLimiter(50, 1.0, clock=clock, sleep=clock.sleep)
    # 12 bases x 5 requests: every base stays within 5/s, the token's 50/s does not.
    delays = [reserve_together([(bases, f"app{n % 12}"), (tokens, "fp_a")]) for n in range(60)]
    assert delays == [0.0] * 50 + [1.0] * 10
    assert reserve_together([(bases, "appOther"), (tokens, "fp_b")]) == 0.0  # its own budget
    assert reserve_together([(bases, "app0"), (tokens, "fp_b")]) == 1.0  # the base still counts


def test_one_slot_is_booked_in_both_limiters() -> None:
    clock = FakeClock()
    bases = SlidingWindowLimiter(1, 1.0, clock=clock, sleep=clock.sleep)
    tokens = SlidingWindowLimiter(2, 1.0, clock=clock, sleep=clock.sleep)
    assert reserve_together([(bases, "appA"), (tokens, "fp_a")]) == 0.0
    assert reserve_together([(bases, "appA"), (tokens, "fp_a")]) == 1.0  # waits on the base
    # The token's second grant was booked at the base's slot (t+1), not at t: a third request
    # may only go at t+1 as well, and then the token window is full until t+2.
    assert reserve_together([(bases, "appB"), (tokens, "fp_a")]) == 1.0
    assert reserve_together([(bases, "appC"), (tokens, "fp_a")]) == 2.0


def test_limiters_booked_together_share_a_clock() -> None:
    clock = FakeClock()
    fake = SlidingWindowLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    with pytest.raises(ValueError, match="share one clock"):
        reserve_together([(fake, "appA"), (SlidingWindowLimiter(50, 1.0), "fp_a")])


async def test_requests_of_one_token_share_a_budget_across_bases(real: AirtableProvider) -> None:
    clock = FakeClock()
    real.rate_limiter = SlidingWindowLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    real.token_limiter = SlidingWindowLimiter(3, 1.0, clock=clock, sleep=clock.sleep)
    sent: list[tuple[str, str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        sent.append((token, request.url.path.split("/")[4], clock.now))
        return httpx.Response(200, json={"tables": []})

    with respx.mock(base_url=REAL) as mock:
        mock.get(url__regex=r"/v0/meta/bases/[^/]+/tables").mock(side_effect=answer)
        for key, base in [(KEY, "app1"), (KEY, "app2"), (KEY, "app3"), (OTHER_KEY, "app4"),
                          (OTHER_KEY, "app5"), (KEY, "app6"), (OTHER_KEY, "app7")]:  # fmt: skip
            await real.call("tables", {"api_key": key}, {"base_id": base})
    assert [(base, at) for _, base, at in sent] == [
        ("app1", 100.0), ("app2", 100.0), ("app3", 100.0),  # the token's 3 per second
        ("app4", 100.0), ("app5", 100.0),  # another token: not held by the first one's budget
        ("app6", 101.0),  # a fourth base for the first token waits for its window
        ("app7", 101.0),
    ]  # fmt: skip
    keys = real.token_limiter.keys()
    assert keys == [real.fingerprint(KEY), real.fingerprint(OTHER_KEY)]
    assert not any(KEY in k or OTHER_KEY in k or "pat" in k for k in keys)


def _list_input(**values: Any) -> Any:
    from arkyra.providers.content.airtable import ListRecordsInput

    return ListRecordsInput(base_id=BASE, table=TABLE, **values)


# -- request shapes --------------------------------------------------------------------------


async def test_check_connection_uses_whoami(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v0/meta/whoami").respond(
            200, json={"id": "usr1", "scopes": ["user.email:read"], "email": "a@b.c"}
        )
        account = await real.check_connection(CREDS)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {KEY}"
    assert (account.id, account.name) == ("usr1", "a@b.c")


async def test_check_connection_without_email_scope(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v0/meta/whoami").respond(200, json={"id": "usr1", "scopes": []})
        assert (await real.check_connection(CREDS)).name == "usr1"
        labelled = await real.check_connection({**CREDS, "label": "Ops"})
    assert labelled.name == "Ops"


async def test_bases_follow_the_offset(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get("/v0/meta/bases").mock(
            side_effect=[
                httpx.Response(200, json={"bases": [{"id": "app1"}], "offset": "itrX/app1"}),
                httpx.Response(200, json={"bases": [{"id": "app2"}]}),
            ]
        )
        bases = await real.call("bases", CREDS, {})
    assert [b["id"] for b in bases] == ["app1", "app2"]
    assert [c.request.url.params.get("offset") for c in route.calls] == [None, "itrX/app1"]


async def test_tables_reads_the_schema(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get(f"/v0/meta/bases/{BASE}/tables").respond(200, json={"tables": [SCHEMA]})
        tables = await real.call("tables", CREDS, {"base_id": BASE})
    assert tables == [SCHEMA]
    assert route.calls.last.request.method == "GET"


async def test_list_records_query_parameters_and_pages(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        route = mock.get(f"/v0/{BASE}/{TABLE}").mock(
            side_effect=[
                httpx.Response(200, json={"records": [record(1, Name="a")], "offset": "itr1/rec"}),
                httpx.Response(200, json={"records": [record(2, Name="b")]}),
            ]
        )
        records = await real.call(
            "list_records",
            CREDS,
            {
                "base_id": BASE,
                "table": TABLE,
                "view": "Grid view",
                "filter_by_formula": "{Done}",
                "fields": ["Name", "Views"],
                "sort": [{"field": "Views", "direction": "desc"}, {"field": "Name"}],
                "page_size": 50,
                "max_records": 500,
            },
        )
    assert [r["id"] for r in records] == ["rec00000000000001", "rec00000000000002"]
    assert records[0]["fields"] == {"Name": "a"}
    assert records[0]["createdTime"].startswith("2026-01-01T00:00:00")
    first, second = (c.request.url.params for c in route.calls)
    assert first["pageSize"] == "50"
    assert first["view"] == "Grid view"
    assert first["filterByFormula"] == "{Done}"
    assert first.get_list("fields[]") == ["Name", "Views"]
    assert (first["sort[0][field]"], first["sort[0][direction]"]) == ("Views", "desc")
    assert (first["sort[1][field]"], first["sort[1][direction]"]) == ("Name", "asc")
    assert first["maxRecords"] == "500"
    assert "offset" not in first
    assert second["offset"] == "itr1/rec"
    assert route.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


async def test_long_formula_goes_through_list_records_post(real: AirtableProvider) -> None:
    formula = "OR(" + ",".join(f"{{Name}}='item {n}'" for n in range(400)) + ")"
    with respx.mock(base_url=REAL) as mock:
        route = mock.post(f"/v0/{BASE}/{TABLE}/listRecords").mock(
            side_effect=[
                httpx.Response(200, json={"records": [record(1)], "offset": "itr1/rec"}),
                httpx.Response(200, json={"records": [record(2)]}),
            ]
        )
        records = await real.records(
            CREDS, _list_input(filter_by_formula=formula, fields=["Name"], sort=[{"field": "Name"}])
        )
    assert len(records) == 2
    first, second = (json.loads(c.request.content) for c in route.calls)
    assert first == {
        "pageSize": 100,
        "filterByFormula": formula,
        "fields": ["Name"],
        "sort": [{"field": "Name", "direction": "asc"}],
    }
    assert second == {**first, "offset": "itr1/rec"}


async def test_send_data_builds_items_from_the_schema(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/meta/bases/{BASE}/tables").respond(200, json={"tables": [SCHEMA]})
        mock.get(f"/v0/{BASE}/Posts").respond(
            200,
            json={
                "records": [
                    record(1, Name="Hello", Notes="Long text", Edited="2026-02-01T10:00:00.000Z"),
                    record(2, Views=3),
                ]
            },
        )
        items = await real.send_data(CREDS, f"{BASE}/Posts")
    first, second = items
    assert (first.source, first.id, first.title, first.body) == (
        "airtable",
        "rec00000000000001",
        "Hello",
        "Long text",
    )
    assert first.source_url == f"https://airtable.com/{BASE}/{TABLE}/rec00000000000001"
    assert first.updated_at is not None
    assert first.updated_at.isoformat() == "2026-02-01T10:00:00+00:00"
    assert first.fields["Name"] == "Hello"
    assert (second.title, second.body, second.updated_at) == ("rec00000000000002", "", None)


async def test_send_data_with_field_ids_uses_the_schema_ids(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/meta/bases/{BASE}/tables").respond(200, json={"tables": [SCHEMA]})
        route = mock.get(f"/v0/{BASE}/{TABLE}").respond(
            200, json={"records": [record(1, fld1="Hello", fld2="Long text")]}
        )
        items = await real.send_data(
            CREDS, {"base_id": BASE, "table": TABLE, "return_fields_by_field_id": True}
        )
    assert route.calls.last.request.url.params["returnFieldsByFieldId"] == "true"
    assert (items[0].title, items[0].body) == ("Hello", "Long text")


async def test_dataframe_of_formatted_cells_is_not_coerced(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/meta/bases/{BASE}/tables").respond(200, json={"tables": [SCHEMA]})
        route = mock.get(f"/v0/{BASE}/{TABLE}").respond(
            200, json={"records": [record(1, Views="1,234")]}
        )
        frame = await real.dataframe(
            CREDS,
            {
                "base_id": BASE,
                "table": TABLE,
                "cell_format": "string",
                "time_zone": "Europe/Paris",
                "user_locale": "fr",
            },
        )
    params = route.calls.last.request.url.params
    assert (params["cellFormat"], params["timeZone"], params["userLocale"]) == (
        "string",
        "Europe/Paris",
        "fr",
    )
    assert frame["Views"].tolist() == ["1,234"]


async def test_send_data_rejects_bad_input(real: AirtableProvider) -> None:
    with pytest.raises(InvalidInput):
        await real.send_data(CREDS, "appOnlyNoTable")
    with pytest.raises(InvalidInput):
        await real.send_data(CREDS, {"base_id": BASE, "table": TABLE, "page_size": 500})


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (
            401,
            {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "m"}},
            InvalidCredentials,
            "AUTHENTICATION_REQUIRED",
        ),
        (
            403,
            {"error": {"type": "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "message": "m"}},
            InvalidCredentials,
            "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        ),
        (
            403,
            {"error": {"type": "INVALID_PERMISSIONS", "message": "m"}},
            InvalidCredentials,
            "INVALID_PERMISSIONS",
        ),
        (404, {"error": "NOT_FOUND"}, BadRequest, "NOT_FOUND"),
        (
            404,
            {"error": {"type": "TABLE_NOT_FOUND", "message": "m"}},
            BadRequest,
            "TABLE_NOT_FOUND",
        ),
        (
            422,
            {"error": {"type": "INVALID_REQUEST_UNKNOWN", "message": "m"}},
            BadRequest,
            "INVALID_REQUEST_UNKNOWN",
        ),
        (
            422,
            {"error": {"type": "INVALID_FILTER_BY_FORMULA", "message": "m"}},
            BadRequest,
            "INVALID_FILTER_BY_FORMULA",
        ),
        (
            422,
            {"error": {"type": "UNKNOWN_FIELD_NAME", "message": "m"}},
            BadRequest,
            "UNKNOWN_FIELD_NAME",
        ),
        (
            429,
            {"errors": [{"error": "PUBLIC_API_BILLING_LIMIT_EXCEEDED", "message": "m"}]},
            QuotaExhausted,
            "PUBLIC_API_BILLING_LIMIT_EXCEEDED",
        ),
        (500, {"error": {"type": "SERVER_ERROR", "message": "m"}}, Transient, "SERVER_ERROR"),
        (
            503,
            {"error": {"type": "SERVICE_UNAVAILABLE", "message": "m"}},
            Transient,
            "SERVICE_UNAVAILABLE",
        ),
    ],
)
async def test_error_types_map_to_the_taxonomy(
    real: AirtableProvider,
    status: int,
    body: dict,
    expected: type[ProviderError],
    code: str,
) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/{BASE}/{TABLE}").respond(status, json=body)
        with pytest.raises(expected) as caught:
            await real.records(CREDS, _list_input())
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.status == status
    assert_secret_free(caught.value)


async def test_not_found_explains_what_to_check(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/meta/bases/{BASE}/tables").respond(404, json={"error": "NOT_FOUND"})
        with pytest.raises(BadRequest, match="access to the base"):
            await real.call("tables", CREDS, {"base_id": BASE})


async def test_rate_limit_asks_for_thirty_seconds(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v0/meta/whoami").respond(
            429, json={"errors": [{"error": "RATE_LIMIT_REACHED", "message": "slow down"}]}
        )
        with pytest.raises(RateLimited) as caught:
            await real.check_connection(CREDS)
    assert caught.value.retry_after == 30
    assert caught.value.code == "RATE_LIMIT_REACHED"


async def test_rate_limit_honours_a_retry_after_header(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v0/meta/whoami").respond(
            429,
            json={"error": {"type": "RATE_LIMIT_REACHED", "message": "m"}},
            headers={"Retry-After": "4"},
        )
        with pytest.raises(RateLimited) as caught:
            await real.check_connection(CREDS)
    assert caught.value.retry_after == 4


async def test_transient_errors_are_retried_through_the_limiter(settings: Settings) -> None:
    clock = FakeClock()
    async with httpx.AsyncClient() as client:
        provider = get_provider(
            "airtable", settings=settings.model_copy(update={"sandbox": False}), client=client
        )
        assert isinstance(provider, AirtableProvider)
        provider.rate_limiter = SlidingWindowLimiter(1, 10.0, clock=clock, sleep=clock.sleep)
        provider.token_limiter = SlidingWindowLimiter(50, 1.0, clock=clock, sleep=clock.sleep)
        with respx.mock(base_url=REAL) as mock:
            route = mock.get("/v0/meta/whoami").mock(
                side_effect=[
                    httpx.Response(503, json={"error": {"type": "SERVICE_UNAVAILABLE"}}),
                    httpx.Response(200, json={"id": "usr1"}),
                ]
            )
            account = await provider.check_connection(CREDS)
    assert account.id == "usr1"
    assert route.call_count == 2
    assert clock.slept == [pytest.approx(10.0)]  # the retry took its own slot


async def test_non_json_error_falls_back_to_status(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get("/v0/meta/whoami").respond(502, text="bad gateway")
        with pytest.raises(Transient):
            await real.check_connection(CREDS)


# -- typed records and DataFrames ------------------------------------------------------------


def test_records_are_typed() -> None:
    parsed = AirtableRecord.model_validate(record(1, Name="x"))
    assert parsed.created_time.year == 2026
    assert parsed.created_time.tzinfo is not None
    assert parsed.fields == {"Name": "x"}


def test_dataframe_uses_schema_types() -> None:
    records = [
        AirtableRecord.model_validate(r)
        for r in (
            record(
                1,
                Name="a",
                Views=10,
                Done=True,
                Due="2026-01-02T03:04:05.000Z",
                Rating=3,
                Ratio=0.5,
                Tags=["x"],
                Edited="2026-01-05T00:00:00.000Z",
            ),
            record(2, Name="b", Due="2026-01-03T00:00:00.000Z", Rating=4, Ratio=0.25),
            record(3, Views=2.5, Rating=1),
        )
    ]
    frame = records_to_dataframe(records, SCHEMA)
    assert list(frame.columns) == [f["name"] for f in SCHEMA["fields"]]
    assert list(frame.index) == [r.id for r in records]
    assert pd.api.types.is_string_dtype(frame["Name"])
    assert pd.isna(frame["Name"].iloc[2])
    assert pd.api.types.is_float_dtype(frame["Views"])
    assert frame["Views"].isna().tolist() == [False, True, False]
    assert frame["Done"].dtype == bool
    assert frame["Done"].tolist() == [True, False, False]  # Airtable omits unchecked boxes
    assert isinstance(frame["Due"].dtype, pd.DatetimeTZDtype)
    assert frame["Due"].iloc[0] == pd.Timestamp("2026-01-02T03:04:05Z")
    assert pd.isna(frame["Due"].iloc[2])
    assert pd.api.types.is_integer_dtype(frame["Rating"])
    assert pd.api.types.is_float_dtype(frame["Ratio"])  # formula typed by its result
    assert frame["Tags"].dtype == object
    assert isinstance(frame["Edited"].dtype, pd.DatetimeTZDtype)


def test_dataframe_by_field_id_and_selected_fields() -> None:
    records = [AirtableRecord.model_validate(record(1, fld3=4, fld1="a"))]
    frame = records_to_dataframe(records, SCHEMA, only=["fld3"], by_field_id=True)
    assert list(frame.columns) == ["fld3"]
    assert pd.api.types.is_numeric_dtype(frame["fld3"])


def test_dataframe_without_schema_infers() -> None:
    records = [AirtableRecord.model_validate(record(n, Views=n, Name=f"r{n}")) for n in (1, 2)]
    frame = records_to_dataframe(records, None)
    assert list(frame.columns) == ["Views", "Name"]
    assert pd.api.types.is_integer_dtype(frame["Views"])


# -- end to end against the sandbox ----------------------------------------------------------


async def test_sandbox_check_connection(sandbox: AirtableProvider) -> None:
    account = await sandbox.check_connection(CREDS)
    assert (account.id, account.name) == (sandbox_airtable.USER_ID, "sandbox@example.com")
    no_email = await sandbox.check_connection({"api_key": "patnoemail.x"})
    assert no_email.name == sandbox_airtable.USER_ID
    with pytest.raises(InvalidCredentials) as caught:
        await sandbox.check_connection({"api_key": "invalid-token"})
    assert caught.value.code == "AUTHENTICATION_REQUIRED"


async def test_sandbox_bases_across_pages(
    sandbox: AirtableProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("airtable")["bases_page_size"] = 2
    bases = await sandbox.call("bases", CREDS, {})
    assert [b["id"] for b in bases] == [
        sandbox_airtable.CONTENT_BASE_ID,
        sandbox_airtable.MARKETING_BASE_ID,
        "appSandbox0000003",
    ]
    assert sandbox_state.calls["airtable GET /airtable/v0/meta/bases"] == 2


async def test_sandbox_send_data_pages_through_generated_records(
    sandbox: AirtableProvider, sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    seeded = await sandbox_client.post("/airtable/_sandbox/seed", params={"records": 250})
    assert seeded.status_code == 200
    items = await sandbox.send_data(
        CREDS, {"base_id": sandbox_airtable.CONTENT_BASE_ID, "table": "Posts"}
    )
    assert len(items) == 250
    assert len({i.id for i in items}) == 250
    assert items[0].title == "Post 1"
    assert items[0].body.startswith("Body of post 1.")
    assert items[0].updated_at is not None
    calls = f"airtable GET /airtable/v0/{sandbox_airtable.CONTENT_BASE_ID}/Posts"
    assert sandbox_state.calls[calls] == 3


async def test_send_data_max_records_asks_for_only_that_many(real: AirtableProvider) -> None:
    with respx.mock(base_url=REAL) as mock:
        mock.get(f"/v0/meta/bases/{BASE}/tables").respond(200, json={"tables": [SCHEMA]})
        route = mock.get(f"/v0/{BASE}/{TABLE}").respond(  # a server that ignores maxRecords
            200, json={"records": [record(n, Name=f"r{n}") for n in range(1, 11)], "offset": "i2"}
        )
        items = await real.send_data(CREDS, {"base_id": BASE, "table": TABLE, "max_records": 5})
    assert [i.title for i in items] == ["r1", "r2", "r3", "r4", "r5"]
    assert route.call_count == 1
    params = route.calls.last.request.url.params
    assert (params["pageSize"], params["maxRecords"]) == ("5", "5")


def test_limit_query_sets_max_records(real: AirtableProvider) -> None:
    limited = real.limit_query(f"{BASE}/{TABLE}", 10)
    assert limited == {"base_id": BASE, "table": TABLE, "max_records": 10}
    assert real.limit_query({**limited, "max_records": 3}, 10)["max_records"] == 3
    with pytest.raises(InvalidInput):
        real.limit_query({"base_id": BASE}, 10)


async def test_sandbox_send_data_with_max_records_makes_one_request(
    sandbox: AirtableProvider, sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    seeded = await sandbox_client.post("/airtable/_sandbox/seed", params={"records": 250})
    assert seeded.status_code == 200
    query = sandbox.limit_query(f"{sandbox_airtable.CONTENT_BASE_ID}/Posts", 5)
    items = await sandbox.send_data(CREDS, query)
    assert [i.title for i in items] == [f"Post {n}" for n in range(1, 6)]
    calls = f"airtable GET /airtable/v0/{sandbox_airtable.CONTENT_BASE_ID}/Posts"
    assert sandbox_state.calls[calls] == 1


async def test_sandbox_rate_limit_is_respected_over_a_long_pagination(
    sandbox: AirtableProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("airtable")["seed_records"] = 650
    records = await sandbox.records(CREDS, _sandbox_input(page_size=100))
    assert len(records) == 650  # 7 pages in one base, more than 5 in a second: no 429


async def test_sandbox_enforces_the_limit_without_the_limiter(
    sandbox: AirtableProvider, sandbox_state: SandboxState
) -> None:
    sandbox.rate_limiter = SlidingWindowLimiter(1000, 1.0)
    sandbox_state.store("airtable")["seed_records"] = 650
    with pytest.raises(RateLimited) as caught:
        await sandbox.records(CREDS, _sandbox_input(page_size=100))
    assert caught.value.retry_after == 30


def _sandbox_input(**values: Any) -> Any:
    from arkyra.providers.content.airtable import ListRecordsInput

    return ListRecordsInput(base_id=sandbox_airtable.CONTENT_BASE_ID, table="Posts", **values)


async def test_sandbox_query_options(sandbox: AirtableProvider) -> None:
    rows = await sandbox.call(
        "list_records",
        CREDS,
        {
            "base_id": sandbox_airtable.CONTENT_BASE_ID,
            "table": sandbox_airtable.POSTS_TABLE_ID,
            "view": "Approved",
            "filter_by_formula": "AND({Views} > 50, NOT({Status} = 'Draft'))",
            "fields": ["Name", "Views", "Status"],
            "sort": [{"field": "Views", "direction": "desc"}],
            "page_size": 3,
        },
    )
    assert rows, "the filter should match some records"
    views = [r["fields"]["Views"] for r in rows]
    assert views == sorted(views, reverse=True)
    assert all(v > 50 for v in views)
    assert all(set(r["fields"]) <= {"Name", "Views", "Status"} for r in rows)
    assert all(r["fields"]["Status"] != "Draft" for r in rows)
    assert all(int(r["fields"]["Name"].split()[-1]) % 2 == 0 for r in rows)  # Approved view


async def test_sandbox_long_formula_uses_post(
    sandbox: AirtableProvider, sandbox_state: SandboxState
) -> None:
    formula = "OR(" + ",".join(f"{{Name}}='Post {n}'" for n in range(1, 400)) + ")"
    records = await sandbox.records(CREDS, _sandbox_input(filter_by_formula=formula, page_size=10))
    assert len(records) == 30
    route = f"airtable POST /airtable/v0/{sandbox_airtable.CONTENT_BASE_ID}/Posts/listRecords"
    assert sandbox_state.calls[route] == 3


async def test_sandbox_dataframe(sandbox: AirtableProvider) -> None:
    frame = await sandbox.dataframe(
        CREDS, {"base_id": sandbox_airtable.CONTENT_BASE_ID, "table": "Posts"}
    )
    assert len(frame) == 30
    assert pd.api.types.is_float_dtype(frame["Views"])
    assert pd.api.types.is_numeric_dtype(frame["Rating"])
    assert frame["Approved"].dtype == bool
    assert frame["Approved"].sum() == 15
    assert isinstance(frame["Published"].dtype, pd.DatetimeTZDtype)
    assert isinstance(frame["Last modified"].dtype, pd.DatetimeTZDtype)
    assert pd.api.types.is_float_dtype(frame["Score"])
    assert pd.api.types.is_string_dtype(frame["Status"])


async def test_sandbox_without_schema_scope(sandbox: AirtableProvider) -> None:
    creds = {"api_key": "patnoschema.x"}
    items = await sandbox.send_data(
        creds,
        {
            "base_id": sandbox_airtable.CONTENT_BASE_ID,
            "table": "Posts",
            "title_field": "Name",
            "body_field": "Body",
            "max_records": 2,
        },
    )
    assert [i.title for i in items] == ["Post 1", "Post 2"]
    assert items[0].source_url is None  # no schema: no table id for the record URL


@pytest.mark.parametrize(
    ("params", "expected", "code"),
    [
        ({"table": "Nope"}, BadRequest, "TABLE_NOT_FOUND"),
        ({"view": "Nope"}, BadRequest, "VIEW_NAME_NOT_FOUND"),
        ({"fields": ["Nope"]}, BadRequest, "UNKNOWN_FIELD_NAME"),
        ({"filter_by_formula": "{Nope} = 1"}, BadRequest, "INVALID_FILTER_BY_FORMULA"),
        ({"filter_by_formula": "AND({Views} >"}, BadRequest, "INVALID_FILTER_BY_FORMULA"),
        (
            {"base_id": "appMissing0000000"},
            InvalidCredentials,
            "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        ),
    ],
)
async def test_sandbox_errors(
    sandbox: AirtableProvider, params: dict, expected: type[ProviderError], code: str
) -> None:
    request = {"base_id": sandbox_airtable.CONTENT_BASE_ID, "table": "Posts", **params}
    with pytest.raises(expected) as caught:
        await sandbox.call("list_records", CREDS, request)
    assert caught.value.code == code


async def test_sandbox_injected_faults_use_airtable_bodies(
    sandbox: AirtableProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("airtable")
    faults.update({"rate_limit_rate": 1.0, "retry_after_seconds": 30})
    with pytest.raises(RateLimited) as limited:
        await sandbox.check_connection(CREDS)
    assert (limited.value.retry_after, limited.value.code) == (30, "RATE_LIMIT_REACHED")
    faults.update({"rate_limit_rate": 0.0, "error_rate": 1.0, "error_status": 500})
    with pytest.raises(Transient) as failed:
        await sandbox.check_connection(CREDS)
    assert failed.value.code == "SERVER_ERROR"
