"""Amplitude emulator: events list, event segmentation and the zip-of-gzipped-NDJSON export.

Follows ``reference/provider-contracts-content-ai.md`` section 7:

- HTTP Basic ``api_key:secret_key``. With ``store["credentials"] = {api_key: secret_key}`` only
  those pairs pass; otherwise any non-empty pair does. Failures are 401.
- ``GET /api/2/events/list`` -> ``{data: [{value, totals, ...}]}``.
- ``GET /api/2/events/segmentation?e=<json>&start=YYYYMMDD&end=YYYYMMDD&m&i&s&g&limit`` ->
  ``{data: {series, seriesLabels, seriesCollapsed, xValues}}`` with deterministic numbers.
- ``GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`` -> a zip with one gzipped NDJSON file
  per hour, ``<project>/<project>_<YYYY-MM-DD>_<H>#0.json.gz``; 404 when there are no events,
  400 for a range over 365 days.
- At most 5 requests in flight per API key; the sixth gets a 429 naming the concurrent limit
  (an export's slot is released once its archive is built, before the bytes stream out).

Store knobs (``state.store("amplitude")``): ``export_events`` (events per export, default 200;
benchmarks may also pass ``?sandbox_events=N``, which the real API does not have),
``work_ms`` (time each request holds its slot, to exercise the concurrency limit),
``credentials``, ``project_id``. ``store["max_in_flight"]`` records the highest concurrency seen.
The error body shape is UNCONFIRMED in the reference; this emulator uses
``{"error": {"http_code", "type", "message"}}`` (clients also accept plain text).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import json
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "amplitude"
MAX_CONCURRENT = 5
DEFAULT_EXPORT_EVENTS = 200
DEFAULT_PROJECT_ID = 187520
EXPORT_MAX_DAYS = 365
METRICS = frozenset({"uniques", "totals", "pct_dau", "average", "histogram", "sums",
                     "value_avg", "formula"})  # fmt: skip
INTERVALS = {"-300000": timedelta(minutes=5), "-3600000": timedelta(hours=1)}
GROUP_VALUES = ("United States", "Germany", "Japan", "Brazil", "India")
EVENT_TYPES = ("Play Song", "Sign Up", "Render Video", "Share", "Purchase")
CHUNK_BYTES = 1 << 16


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"http_code": status, "type": kind, "message": message}}


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Injected faults in this emulator's Amplitude error shape."""
    if kind == "rate_limit" or status == 429:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        body = error_body(429, "rate_limit", "Exceeded the hourly query cost limit.")
        return JSONResponse(body, status_code=429, headers=headers)
    return JSONResponse(error_body(status, "server_error", "Internal error."), status_code=status)


def _fail(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, kind, message), status_code=status)


def _api_key(request: Request, state: SandboxState) -> str | None:
    """The API key of a valid Basic pair, else ``None``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        api_key, sep, secret_key = base64.b64decode(token).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not api_key or not secret_key:
        return None
    allowed = state.store(IDENTIFIER).get("credentials")
    if allowed is not None and allowed.get(api_key) != secret_key:
        return None
    return api_key


class _Slot:
    """Counts requests in flight per key; refuses the sixth like Amplitude does."""

    def __init__(self, state: SandboxState, api_key: str) -> None:
        self.store = state.store(IDENTIFIER)
        self.api_key = api_key
        self.taken = False

    def enter(self) -> bool:
        in_flight: dict[str, int] = self.store.setdefault("_in_flight", {})
        if in_flight.get(self.api_key, 0) >= MAX_CONCURRENT:
            return False
        in_flight[self.api_key] = in_flight.get(self.api_key, 0) + 1
        self.store["max_in_flight"] = max(
            self.store.get("max_in_flight", 0), in_flight[self.api_key]
        )
        self.taken = True
        return True

    def leave(self) -> None:
        if self.taken:
            self.store["_in_flight"][self.api_key] -= 1
            self.taken = False


def _number(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000


def _day(raw: str | None) -> date:
    return datetime.strptime(raw or "", "%Y%m%d").date()


def _x_values(start: date, end: date, interval: str) -> list[str]:
    if interval in INTERVALS:
        step = INTERVALS[interval]
        moment = datetime.combine(start, datetime.min.time())
        stop = datetime.combine(end, datetime.min.time()) + timedelta(days=1)
        values = []
        while moment < stop and len(values) < 2000:
            values.append(moment.strftime("%Y-%m-%dT%H:%M:%S"))
            moment += step
        return values
    days = {"1": 1, "7": 7, "30": 30}[interval]
    values = []
    current = start
    while current <= end:
        values.append(current.isoformat())
        current += timedelta(days=days)
    return values


def _segmentation(params: Any) -> tuple[int, dict[str, Any]]:
    try:
        event = json.loads(params.get("e") or "")
        start, end = _day(params.get("start")), _day(params.get("end"))
    except ValueError:
        return 400, error_body(400, "invalid_request", "e must be JSON; start/end YYYYMMDD.")
    if not isinstance(event, dict) or not event.get("event_type"):
        return 400, error_body(400, "invalid_request", "e.event_type is required.")
    metric, interval = params.get("m", "uniques"), params.get("i", "1")
    if metric not in METRICS or interval not in ("1", "7", "30", *INTERVALS):
        return 400, error_body(400, "invalid_request", "Unknown m or i.")
    if end < start:
        return 400, error_body(400, "invalid_request", "end is before start.")
    x_values = _x_values(start, end, interval)
    grouped = bool(params.get("g") or event.get("group_by"))
    limit = int(params.get("limit", 100)) if str(params.get("limit", "100")).isdigit() else 100
    groups = list(GROUP_VALUES[: max(1, min(limit, len(GROUP_VALUES)))]) if grouped else [None]
    series = [[_number(event["event_type"], metric, x, g) for x in x_values] for g in groups]
    labels: list[Any] = [[0, g] for g in groups] if grouped else [0]
    collapsed = [[{"setId": "", "value": sum(values)}] for values in series]
    data = {
        "series": series,
        "seriesLabels": labels,
        "seriesCollapsed": collapsed,
        "xValues": x_values,
    }
    return 200, {"data": data}


def _hour(raw: str | None) -> datetime:
    return datetime.strptime(raw or "", "%Y%m%dT%H").replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _event(project_id: int, i: int, moment: datetime) -> dict[str, Any]:
    return {
        "$insert_id": f"ins-{i}",
        "amplitude_id": 9_000_000_000 + i % 97,
        "app": project_id,
        "city": ("Berlin", "Austin", "Osaka")[i % 3],
        "client_event_time": _stamp(moment),
        "client_upload_time": _stamp(moment + timedelta(seconds=2)),
        "country": ("Germany", "United States", "Japan")[i % 3],
        "device_id": f"device-{i % 41}",
        "event_id": i,
        "event_properties": {"song": f"track-{i % 13}", "position": i % 7},
        "event_time": _stamp(moment),
        "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
        "language": "English",
        "os_name": ("ios", "android", "Chrome")[i % 3],
        "platform": ("iOS", "Android", "Web")[i % 3],
        "processed_time": _stamp(moment + timedelta(seconds=5)),
        "server_received_time": _stamp(moment + timedelta(seconds=3)),
        "server_upload_time": _stamp(moment + timedelta(seconds=3)),
        "session_id": 1_700_000_000_000 + i // 10,
        "user_id": f"user-{i % 53}" if i % 4 else None,
        "user_properties": {"plan": ("free", "pro")[i % 2]},
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
    }


def build_export(project_id: int, start: datetime, end: datetime, count: int) -> IO[bytes]:
    """The export archive in a spooled temp file: one gzipped NDJSON member per hour."""
    hours = max(1, int((end - start) / timedelta(hours=1)) + 1)
    archive_file = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
    per_hour, extra = divmod(count, hours)
    with zipfile.ZipFile(archive_file, "w", compression=zipfile.ZIP_STORED) as archive:
        index = 0
        for hour in range(hours):
            n = per_hour + (1 if hour < extra else 0)
            if n == 0:
                continue
            base = start + timedelta(hours=hour)
            name = f"{project_id}/{project_id}_{base:%Y-%m-%d}_{base.hour}#0.json.gz"
            with archive.open(name, "w") as member, gzip.open(member, "wt") as lines:
                for k in range(n):
                    moment = base + timedelta(seconds=(k * 3600) // n)
                    lines.write(json.dumps(_event(project_id, index, moment)) + "\n")
                    index += 1
    archive_file.seek(0)
    return archive_file


def _chunks(archive_file: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := archive_file.read(CHUNK_BYTES):
            yield chunk
    finally:
        archive_file.close()


def _export_size(request: Request, store: dict[str, Any]) -> int:
    raw = request.query_params.get("sandbox_events")
    if raw and raw.isdigit():
        return int(raw)
    return int(store.get("export_events", DEFAULT_EXPORT_EVENTS))


def routes(state: SandboxState) -> list[BaseRoute]:
    store = state.store(IDENTIFIER)

    async def guarded(request: Request, handler: Any) -> Response:
        """Auth, then one concurrency slot for the duration of the handler."""
        api_key = _api_key(request, state)
        if api_key is None:
            return _fail(401, "unauthorized", "Invalid API key or secret key.")
        slot = _Slot(state, api_key)
        if not slot.enter():
            return _fail(429, "concurrent_limit", "Exceeded the concurrent request limit (5).")
        try:
            if work_ms := float(store.get("work_ms", 0)):
                await asyncio.sleep(work_ms / 1000)
            return await handler(request)
        finally:
            slot.leave()

    async def events_list(request: Request) -> Response:
        async def handle(request: Request) -> Response:
            rows = [
                {"value": name, "totals": _number(name, "week"), "non_active": False,
                 "deleted": False, "flow_hidden": False, "hidden": False}
                for name in EVENT_TYPES
            ]  # fmt: skip
            return JSONResponse({"data": rows})

        return await guarded(request, handle)

    async def segmentation(request: Request) -> Response:
        async def handle(request: Request) -> Response:
            status, body = _segmentation(request.query_params)
            return JSONResponse(body, status_code=status)

        return await guarded(request, handle)

    async def export(request: Request) -> Response:
        async def handle(request: Request) -> Response:
            try:
                start = _hour(request.query_params.get("start"))
                end = _hour(request.query_params.get("end"))
            except ValueError:
                return _fail(400, "invalid_request", "start and end must be YYYYMMDDTHH.")
            if end < start:
                return _fail(400, "invalid_request", "end is before start.")
            if end - start > timedelta(days=EXPORT_MAX_DAYS):
                return _fail(400, "invalid_request", "The date range exceeds 365 days.")
            count = _export_size(request, store)
            if count <= 0:
                return PlainTextResponse("Raw data files were not found.", status_code=404)
            project_id = int(store.get("project_id", DEFAULT_PROJECT_ID))
            archive_file = await run_in_threadpool(build_export, project_id, start, end, count)
            return StreamingResponse(_chunks(archive_file), media_type="application/zip")

        return await guarded(request, handle)

    return [
        Route("/api/2/events/list", events_list, methods=["GET"]),
        Route("/api/2/events/segmentation", segmentation, methods=["GET"]),
        Route("/api/2/export", export, methods=["GET"]),
    ]
