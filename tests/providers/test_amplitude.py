"""Amplitude provider against the contract (respx for amplitude.com) and the sandbox end to end.

Request shapes (hosts per region, Basic auth, segmentation parameters), every documented error,
the 5-concurrent-request cap, and the export streamed from a zip of gzipped NDJSON into a
DataFrame with the right dtypes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import respx

from arkyra.errors import (
    BadRequest,
    InvalidCredentials,
    InvalidInput,
    ProviderError,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, get_provider, provider_class
from arkyra.providers.content import amplitude as amplitude_module
from arkyra.providers.content.amplitude import AmplitudeData, AmplitudeProvider
from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors.amplitude import build_export
from tests.conftest import make_settings

US = "https://amplitude.com"
EU = "https://analytics.eu.amplitude.com"
API_KEY = "amp-api-key-0123456789abcdef"
SECRET = "amp-secret-fedcba9876543210"
CREDS = {"api_key": API_KEY, "secret_key": SECRET, "region": "us"}
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET}".encode()).decode()

EVENTS_LIST = {"data": [{"value": "Play Song", "totals": 12}, {"value": "Sign Up", "totals": 3}]}
SEGMENTATION = {
    "data": {
        "series": [[10, 20, 30], [1, 2, 3]],
        "seriesLabels": [[0, "United States"], [0, "Germany"]],
        "seriesCollapsed": [[{"setId": "", "value": 60}], [{"setId": "", "value": 6}]],
        "xValues": ["2026-10-01", "2026-10-02", "2026-10-03"],
    }
}
SEGMENTATION_INPUT = {
    "event": {
        "event_type": "Play Song",
        "filters": [
            {
                "subprop_type": "user",
                "subprop_key": "country",
                "subprop_op": "is",
                "subprop_value": ["United States", "Germany"],
            }
        ],
    },
    "start": "2026-10-01",
    "end": "2026-10-03",
    "metric": "uniques",
    "interval": 1,
    "segments": [{"prop": "platform", "op": "is", "values": ["iOS"]}],
    "group_by": "country",
    "limit": 50,
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def amplitude(tmp_path: Path, http: httpx.AsyncClient) -> AmplitudeProvider:
    """The provider on the real hosts; one attempt so error tests stay fast."""
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=1)
    provider = get_provider("amplitude", settings=settings, client=http)
    assert isinstance(provider, AmplitudeProvider)
    return provider


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=US, assert_all_called=False) as router:
        yield router


def export_zip(count: int) -> bytes:
    archive = build_export(
        187520, datetime(2026, 10, 1, 0, tzinfo=UTC), datetime(2026, 10, 1, 3, tzinfo=UTC), count
    )
    with archive:
        return archive.read()


# -- registration ------------------------------------------------------------------------------


def test_registered_with_fixed_fields() -> None:
    cls = provider_class("amplitude")
    assert cls.category == "content"
    fields = {f.name: f for f in cls.fields}
    assert list(fields) == ["api_key", "secret_key", "region"]
    assert fields["api_key"].is_secret
    assert fields["secret_key"].is_secret
    assert fields["region"].kind == "select"
    assert fields["region"].options == ("us", "eu")
    assert {"event_segmentation", "export_events", "event_types"} <= set(cls.exposed)
    with pytest.raises(InvalidInput):
        cls.validate_credentials({**CREDS, "region": "apac"})


# -- identity and hosts ------------------------------------------------------------------------


async def test_check_connection_shape_and_fingerprint(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    route = api.get("/api/2/events/list").respond(json=EVENTS_LIST)
    account = await amplitude.check_connection({**CREDS, "label": "Music app"})
    assert route.calls.last.request.headers["Authorization"] == BASIC
    assert account.id.startswith("fp_")
    assert account.id == amplitude.fingerprint(API_KEY)
    assert API_KEY not in account.id
    assert account.name == "Music app"
    unlabelled = await amplitude.check_connection(CREDS)
    assert unlabelled.name == "Amplitude"


async def test_eu_region_uses_the_eu_host(amplitude: AmplitudeProvider) -> None:
    with respx.mock(base_url=EU) as eu:
        route = eu.get("/api/2/events/list").respond(json=EVENTS_LIST)
        await amplitude.check_connection({**CREDS, "region": "eu"})
    assert route.called


async def test_keys_from_the_other_region_get_a_region_hint(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    us = api.get("/api/2/events/list").respond(401, text="Invalid API key")
    with respx.mock(base_url=EU, assert_all_mocked=False) as eu:
        eu_route = eu.get("/api/2/events/list").respond(json=EVENTS_LIST)
        with pytest.raises(InvalidInput) as caught:
            await amplitude.check_connection(CREDS)
    assert us.called
    assert eu_route.called
    assert caught.value.errors == {"region": "set the region to eu"}


async def test_keys_refused_everywhere_stay_invalid_credentials(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    api.get("/api/2/events/list").respond(401, text="Invalid API key")
    with respx.mock(base_url=EU) as eu:
        eu.get("/api/2/events/list").respond(401, text="Invalid API key")
        with pytest.raises(InvalidCredentials):
            await amplitude.check_connection(CREDS)


async def test_settings_override_beats_the_region(tmp_path: Path, http: httpx.AsyncClient) -> None:
    settings = make_settings(tmp_path, sandbox=False, amplitude_base_url="https://amp.proxy.test")
    provider = get_provider("amplitude", settings=settings, client=http)
    with respx.mock(base_url="https://amp.proxy.test") as proxy:
        route = proxy.get("/api/2/events/list").respond(json=EVENTS_LIST)
        await provider.check_connection({**CREDS, "region": "eu"})
    assert route.called


async def test_missing_secret_is_refused_before_any_call(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    with pytest.raises(InvalidCredentials):
        await amplitude.check_connection({"api_key": API_KEY, "secret_key": " ", "region": "us"})
    assert not api.calls


# -- segmentation ------------------------------------------------------------------------------


async def test_segmentation_request_shape_and_dataframe(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    route = api.get("/api/2/events/segmentation").respond(json=SEGMENTATION)
    result = await amplitude.call("event_segmentation", CREDS, SEGMENTATION_INPUT)
    request = route.calls.last.request
    assert request.headers["Authorization"] == BASIC
    params = request.url.params
    assert json.loads(params["e"]) == {
        "event_type": "Play Song",
        "filters": [
            {
                "subprop_type": "user",
                "subprop_key": "country",
                "subprop_op": "is",
                "subprop_value": ["United States", "Germany"],
            }
        ],
        "group_by": [],
    }
    assert params["start"] == "20261001"
    assert params["end"] == "20261003"
    assert params["m"] == "uniques"
    assert params["i"] == "1"
    assert params["g"] == "country"
    assert params["limit"] == "50"
    assert json.loads(params["s"]) == [{"prop": "platform", "op": "is", "values": ["iOS"]}]

    frame = result.to_dataframe()
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "date"
    assert frame.index[0] == pd.Timestamp("2026-10-01")
    assert list(frame.columns) == ["United States", "Germany"]
    assert all(pd.api.types.is_float_dtype(t) for t in frame.dtypes)
    assert frame.loc["2026-10-02", "United States"] == 20


async def test_ungrouped_series_is_named_after_the_event(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    x_values = ["2026-10-01", "2026-10-02"]
    api.get("/api/2/events/segmentation").respond(
        json={"data": {"series": [[5, None]], "seriesLabels": [0], "xValues": x_values}}
    )
    result = await amplitude.call(
        "event_segmentation",
        CREDS,
        {"event": {"event_type": "Sign Up"}, "start": "2026-10-01", "end": "2026-10-02"},
    )
    frame = result.to_dataframe()
    assert list(frame.columns) == ["Sign Up"]
    assert frame["Sign Up"].isna().tolist() == [False, True]


async def test_segmentation_input_is_validated(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    bad = [
        {**SEGMENTATION_INPUT, "start": "2026-10-05", "end": "2026-10-01"},
        {**SEGMENTATION_INPUT, "metric": "median"},
        {**SEGMENTATION_INPUT, "interval": 2},
        {**SEGMENTATION_INPUT, "limit": 1001},
        {**SEGMENTATION_INPUT, "unknown": 1},
    ]
    for payload in bad:
        with pytest.raises(InvalidInput):
            await amplitude.call("event_segmentation", CREDS, payload)
    assert not api.calls


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": {"http_code": 400, "message": "Invalid e parameter"}}, BadRequest),
        (401, "Invalid API key or secret key", InvalidCredentials),
        (403, {"error": "Forbidden for this project"}, InvalidCredentials),
        (404, "Not found", BadRequest),
        (429, {"error": {"message": "Exceeded concurrent limit"}}, RateLimited),
        (500, "Internal server error", Transient),
        (503, "Service unavailable", Transient),
    ],
)
async def test_errors_map_to_the_taxonomy(
    amplitude: AmplitudeProvider,
    api: respx.MockRouter,
    status: int,
    body: Any,
    expected: type[ProviderError],
) -> None:
    response = (
        httpx.Response(status, json=body)
        if isinstance(body, dict)
        else httpx.Response(status, text=body)
    )
    api.get("/api/2/events/segmentation").mock(return_value=response)
    with pytest.raises(expected) as caught:
        await amplitude.call("event_segmentation", CREDS, SEGMENTATION_INPUT)
    assert type(caught.value) is expected
    assert caught.value.status == status
    message = body if isinstance(body, str) else json.dumps(body)
    assert caught.value.message in message
    assert API_KEY not in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_rate_limit_keeps_retry_after(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    api.get("/api/2/events/list").respond(
        429, text="Exceeded the hourly cost limit", headers={"Retry-After": "120"}
    )
    with pytest.raises(RateLimited) as caught:
        await amplitude.check_connection(CREDS)
    assert caught.value.retry_after == 120


# -- the concurrency cap -----------------------------------------------------------------------


async def test_at_most_five_requests_in_flight_per_project(tmp_path: Path) -> None:
    """Six concurrent calls with one key: five run, the sixth waits; another key is not held."""
    in_flight = 0
    peak: dict[str, int] = {}
    release = asyncio.Event()
    five_started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight
        key = request.headers["Authorization"]
        in_flight += 1
        peak[key] = max(peak.get(key, 0), in_flight)
        if in_flight == 5:
            five_started.set()
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json=EVENTS_LIST)

    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = get_provider("amplitude", settings=settings, client=client)
        calls = [asyncio.create_task(provider.check_connection(CREDS)) for _ in range(6)]
        await asyncio.wait_for(five_started.wait(), timeout=5)
        await asyncio.sleep(0.02)  # give the sixth every chance to start
        assert in_flight == 5
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
    assert len(results) == 6
    assert peak[BASIC] == 5


async def test_semaphores_are_per_key_fingerprint(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sandbox=False)
    provider = get_provider("amplitude", settings=settings)
    one = amplitude_module.concurrency_slot(provider.fingerprint("key-one"))
    assert amplitude_module.concurrency_slot(provider.fingerprint("key-one")) is one
    assert amplitude_module.concurrency_slot(provider.fingerprint("key-two")) is not one


# -- export ------------------------------------------------------------------------------------


async def test_export_request_shape_and_dtypes(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    route = api.get("/api/2/export").respond(
        content=export_zip(40), headers={"Content-Type": "application/zip"}
    )
    params = amplitude_module.ExportInput.model_validate(
        {"start": "20261001T00", "end": "20261001T03"}
    )
    frame = await amplitude.export_frame(CREDS, params)
    request = route.calls.last.request
    assert request.headers["Authorization"] == BASIC
    assert request.url.params["start"] == "20261001T00"
    assert request.url.params["end"] == "20261001T03"
    assert len(frame) == 40
    assert isinstance(frame["event_time"].dtype, pd.DatetimeTZDtype)
    assert str(frame["event_time"].dt.tz) == "UTC"
    assert frame["event_time"].min() >= pd.Timestamp("2026-10-01T00:00:00Z")
    assert frame["event_type"].dtype == "string"
    assert frame["amplitude_id"].dtype == "Int64"
    assert frame["session_id"].dtype == "Int64"
    assert frame["insert_id"].notna().all()
    assert isinstance(frame["event_properties"].iloc[0], dict)
    assert frame["user_id"].isna().any()  # the export has anonymous events


async def test_export_streams_to_a_temporary_file_that_is_removed(
    amplitude: AmplitudeProvider, api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = export_zip(25)
    api.get("/api/2/export").respond(content=payload)
    seen: list[tuple[Path, int]] = []
    real_read = amplitude_module.read_export

    def spy(path: Path, limit: int | None = None) -> pd.DataFrame:
        seen.append((path, path.stat().st_size))
        return real_read(path, limit)

    monkeypatch.setattr(amplitude_module, "read_export", spy)
    frame = await amplitude.export_frame(
        CREDS,
        amplitude_module.ExportInput.model_validate({"start": "20261001T00", "end": "20261001T03"}),
    )
    assert len(frame) == 25
    ((path, size),) = seen
    assert size == len(payload)
    assert Path(tempfile.gettempdir()) in path.parents
    assert not path.exists()


async def test_export_404_means_no_data(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    api.get("/api/2/export").respond(404, text="Raw data files were not found.")
    preview = await amplitude.call(
        "export_events", CREDS, {"start": "20261001T00", "end": "20261001T23"}
    )
    assert preview.row_count == 0
    assert "event_time" in preview.columns
    data = await amplitude.send_data(
        CREDS, {"kind": "export", "start": "20261001T00", "end": "20261001T23"}
    )
    assert data.frame.empty
    assert isinstance(data.frame["event_time"].dtype, pd.DatetimeTZDtype)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, BadRequest), (401, InvalidCredentials), (403, InvalidCredentials),
     (429, RateLimited), (500, Transient), (503, Transient)],
)  # fmt: skip
async def test_export_errors_map_to_the_taxonomy(
    amplitude: AmplitudeProvider,
    api: respx.MockRouter,
    status: int,
    expected: type[ProviderError],
) -> None:
    api.get("/api/2/export").respond(status, text="nope")
    with pytest.raises(expected):
        await amplitude.call("export_events", CREDS, {"start": "20261001T00", "end": "20261001T01"})


async def test_export_range_is_bounded_before_any_call(
    amplitude: AmplitudeProvider, api: respx.MockRouter
) -> None:
    with pytest.raises(InvalidInput):
        await amplitude.call("export_events", CREDS, {"start": "20250101T00", "end": "20260301T00"})
    with pytest.raises(InvalidInput):
        await amplitude.call("export_events", CREDS, {"start": "20261002T00", "end": "20261001T00"})
    assert not api.calls


async def test_export_retries_a_transient_failure(tmp_path: Path, http: httpx.AsyncClient) -> None:
    settings = make_settings(tmp_path, sandbox=False, http_max_attempts=3)
    provider = get_provider("amplitude", settings=settings, client=http)
    assert isinstance(provider, AmplitudeProvider)
    with respx.mock(base_url=US) as api:
        route = api.get("/api/2/export").mock(
            side_effect=[
                httpx.Response(503, text="busy"),
                httpx.Response(200, content=export_zip(7)),
            ]
        )
        data = await provider.send_data(
            CREDS, {"kind": "export", "start": "20261001T00", "end": "20261001T03"}
        )
    assert route.call_count == 2
    assert len(data.frame) == 7


# -- sandbox, end to end -----------------------------------------------------------------------

SANDBOX_CREDS = {"api_key": "sandbox-api", "secret_key": "sandbox-secret", "region": "eu"}


@pytest.fixture
def sandbox_amplitude(provider_factory: Callable[[str], ThirdPartyProvider]) -> AmplitudeProvider:
    provider = provider_factory("amplitude")
    assert isinstance(provider, AmplitudeProvider)
    return provider


async def test_sandbox_connection_and_wrong_keys(
    sandbox_amplitude: AmplitudeProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("amplitude")["credentials"] = {"sandbox-api": "sandbox-secret"}
    account = await sandbox_amplitude.check_connection(SANDBOX_CREDS)
    assert account.id == sandbox_amplitude.fingerprint("sandbox-api")
    assert await sandbox_amplitude.call("event_types", SANDBOX_CREDS, {}) == [
        "Play Song", "Sign Up", "Render Video", "Share", "Purchase",
    ]  # fmt: skip
    with pytest.raises(InvalidCredentials):
        await sandbox_amplitude.check_connection({**SANDBOX_CREDS, "secret_key": "wrong"})


async def test_sandbox_segmentation_send_data(sandbox_amplitude: AmplitudeProvider) -> None:
    data = await sandbox_amplitude.send_data(SANDBOX_CREDS, {**SEGMENTATION_INPUT, "limit": 3})
    assert isinstance(data, AmplitudeData)
    assert data.item.source == "amplitude"
    assert data.item.fields["row_count"] == 3
    assert list(data.frame.columns) == ["United States", "Germany", "Japan"]
    assert data.frame.index.tolist() == list(pd.date_range("2026-10-01", periods=3))
    assert all(pd.api.types.is_float_dtype(t) for t in data.frame.dtypes)
    weekly = await sandbox_amplitude.call(
        "event_segmentation",
        SANDBOX_CREDS,
        {"event": {"event_type": "Share"}, "start": "2026-09-01", "end": "2026-09-30",
         "interval": 7},
    )  # fmt: skip
    assert len(weekly.to_dataframe()) == 5


async def test_sandbox_large_export_into_a_dataframe(
    sandbox_amplitude: AmplitudeProvider, sandbox_state: SandboxState
) -> None:
    sandbox_state.store("amplitude")["export_events"] = 5_000
    params = {"kind": "export", "start": "20261001T00", "end": "20261001T23"}
    data = await sandbox_amplitude.send_data(SANDBOX_CREDS, params)
    frame = data.frame
    assert len(frame) == 5_000
    assert frame["event_id"].is_unique
    assert isinstance(frame["event_time"].dtype, pd.DatetimeTZDtype)
    assert frame["event_time"].dt.hour.nunique() == 24
    assert frame["amplitude_id"].dtype == "Int64"
    assert frame["country"].dtype == "string"
    assert data.item.fields["row_count"] == 5_000

    limited = await sandbox_amplitude.call(
        "export_events", SANDBOX_CREDS, {"start": "20261001T00", "end": "20261001T23", "limit": 10}
    )
    assert limited.row_count == 10
    assert len(limited.rows) == 10

    sandbox_state.store("amplitude")["export_events"] = 0
    empty = await sandbox_amplitude.send_data(SANDBOX_CREDS, params)
    assert empty.frame.empty


async def test_sandbox_never_sees_more_than_five_in_flight(
    sandbox_amplitude: AmplitudeProvider, sandbox_state: SandboxState
) -> None:
    store = sandbox_state.store("amplitude")
    store["work_ms"] = 30
    results = await asyncio.gather(
        *(sandbox_amplitude.check_connection(SANDBOX_CREDS) for _ in range(6))
    )
    assert len(results) == 6
    assert store["max_in_flight"] == 5
    # Exactly six requests: none was refused with a 429 and sent again.
    assert sandbox_state.calls["amplitude GET /amplitude/api/2/events/list"] == 6


async def test_sandbox_refuses_a_sixth_concurrent_request(
    sandbox_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    """Without the client-side cap the emulator answers like Amplitude: 429 for the sixth."""
    sandbox_state.store("amplitude")["work_ms"] = 30
    auth = ("k", "s")
    responses = await asyncio.gather(
        *(sandbox_client.get("/amplitude/api/2/events/list", auth=auth) for _ in range(6))
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429]
    limited = next(r for r in responses if r.status_code == 429)
    assert "concurrent" in limited.json()["error"]["message"]


async def test_sandbox_injected_rate_limit(
    sandbox_amplitude: AmplitudeProvider, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("amplitude")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 30
    with pytest.raises(RateLimited) as caught:
        await sandbox_amplitude.check_connection(SANDBOX_CREDS)
    assert caught.value.retry_after == 30
