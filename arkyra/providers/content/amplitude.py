"""Amplitude as a content source: event segmentation and the raw-event export, as DataFrames.

Contract: ``reference/provider-contracts-content-ai.md`` section 7.

- Hosts: ``https://amplitude.com`` (US) or ``https://analytics.eu.amplitude.com`` (EU), chosen by
  the ``region`` field; a base-URL override in settings, or sandbox mode, takes precedence.
- Auth: HTTP Basic ``api_key:secret_key`` (one pair per project).
- Check: ``GET /api/2/events/list``, the cheapest real call. Amplitude returns no project
  identity, so the account id is a keyed fingerprint of the API key and the name is the label.
- ``GET /api/2/events/segmentation`` -> a DataFrame indexed by date with one numeric column per
  series.
- ``GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`` -> a zip of gzipped NDJSON files. The
  archive is streamed to a temporary file (never held in memory), then each member's gzip stream
  is read line by line. A 404 means "no data in that range" and gives an empty table.

Limits (per project): **5 concurrent requests** across all REST endpoints. Every request from
this module takes a slot of an ``asyncio.Semaphore(5)`` keyed by the API key's fingerprint, so one
process never exceeds it (other processes share Amplitude's limit but not this semaphore; run
them under a Prefect concurrency limit of 5 per project). There is also an hourly cost budget
(days x conditions x query-type cost); a 429 says which limit was hit and becomes
:class:`~arkyra.errors.RateLimited`.

Errors: 400 -> BadRequest, 401/403 -> InvalidCredentials, 404 -> BadRequest (export: empty
result), 429 -> RateLimited, 5xx -> Transient. The error body format is UNCONFIRMED; messages are
read from ``{"error": {"message"}}``, ``{"error": "..."}`` or plain text.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tempfile
import weakref
import zipfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import pandas as pd
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from arkyra.errors import InvalidCredentials, InvalidInput, ProviderError, Transient
from arkyra.http.retry import call_with_retries
from arkyra.providers.base import (
    AccountInfo,
    CredentialField,
    ExposedInput,
    NoInput,
    ThirdPartyProvider,
    expose,
    third_party,
)
from arkyra.providers.content.items import AnalyticsContent, ContentItem

IDENTIFIER = "amplitude"
REGION_HOSTS: dict[str, str] = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
MAX_CONCURRENT_REQUESTS = 5
EXPORT_MAX_DAYS = 365
EXPORT_CHUNK_BYTES = 1 << 16

Metric = Literal["uniques", "totals", "pct_dau", "average", "sums", "value_avg"]
Interval = Literal[-300000, -3600000, 1, 7, 30]
FilterOp = Literal[
    "is",
    "is not",
    "contains",
    "does not contain",
    "less",
    "less or equal",
    "greater",
    "greater or equal",
    "set is",
    "set is not",
]

#: Export columns kept in the DataFrame, with their dtype ("datetime" = UTC timestamps).
EXPORT_COLUMNS: dict[str, str] = {
    "event_time": "datetime",
    "server_upload_time": "datetime",
    "client_event_time": "datetime",
    "event_type": "string",
    "user_id": "string",
    "device_id": "string",
    "amplitude_id": "Int64",
    "event_id": "Int64",
    "session_id": "Int64",
    "insert_id": "string",
    "uuid": "string",
    "platform": "string",
    "os_name": "string",
    "country": "string",
    "city": "string",
    "language": "string",
    "event_properties": "object",
    "user_properties": "object",
}
#: Where a column's value lives in the NDJSON record when the names differ.
EXPORT_SOURCE_KEYS: dict[str, str] = {"insert_id": "$insert_id"}


# -- concurrency: 5 in flight per project key --------------------------------------------------

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def concurrency_slot(key_fingerprint: str) -> asyncio.Semaphore:
    """The semaphore for one project key on the running loop (semaphores are loop-bound)."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(key_fingerprint, asyncio.Semaphore(MAX_CONCURRENT_REQUESTS))


# -- inputs and results -------------------------------------------------------------------------


class SegmentationFilter(BaseModel):
    """One event or user property condition inside ``e.filters``."""

    subprop_type: Literal["event", "user"] = "event"
    subprop_key: str = Field(min_length=1, max_length=400)
    subprop_op: FilterOp = "is"
    subprop_value: list[str] = Field(min_length=1, max_length=100)


class SegmentationGroupBy(BaseModel):
    type: Literal["event", "user"] = "event"
    value: str = Field(min_length=1, max_length=400)


class SegmentationEvent(BaseModel):
    """The ``e`` parameter: which event, filtered and grouped how."""

    event_type: str = Field(min_length=1, max_length=1024)
    filters: list[SegmentationFilter] = Field(default_factory=list, max_length=50)
    group_by: list[SegmentationGroupBy] = Field(default_factory=list, max_length=2)


class SegmentFilter(BaseModel):
    """One condition of the ``s`` (segment) parameter."""

    prop: str = Field(min_length=1, max_length=400)
    op: FilterOp = "is"
    values: list[str] = Field(min_length=1, max_length=100)


class SegmentationInput(ExposedInput):
    """Typed parameters of ``GET /api/2/events/segmentation``."""

    event: SegmentationEvent
    start: date
    end: date
    metric: Metric = Field(default="totals", description="The m parameter.")
    interval: Interval = Field(default=1, description="i: -300000 5-min, -3600000 hour, 1/7/30.")
    segments: list[SegmentFilter] = Field(default_factory=list, description="The s parameter.")
    group_by: str | None = Field(default=None, max_length=400, description="The g parameter.")
    limit: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentationInput:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    def query_params(self) -> dict[str, str]:
        params = {
            "e": json.dumps(self.event.model_dump(), separators=(",", ":")),
            "start": self.start.strftime("%Y%m%d"),
            "end": self.end.strftime("%Y%m%d"),
            "m": self.metric,
            "i": str(self.interval),
            "limit": str(self.limit),
        }
        if self.segments:
            segments = [s.model_dump() for s in self.segments]
            params["s"] = json.dumps(segments, separators=(",", ":"))
        if self.group_by:
            params["g"] = self.group_by
        return params


class SegmentationResult(BaseModel):
    """Series by label over the x values (dates or timestamps)."""

    x_values: list[str]
    series: dict[str, list[float]]

    def to_dataframe(self) -> pd.DataFrame:
        index = pd.DatetimeIndex(pd.to_datetime(self.x_values), name="date")
        frame = pd.DataFrame(self.series, index=index, dtype="float64")
        return frame


class ExportInput(ExposedInput):
    """An hour range in UTC (``YYYYMMDDTHH``, a date, or a datetime); at most 365 days."""

    start: datetime
    end: datetime
    limit: int | None = Field(default=None, ge=1, description="Read at most this many events.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _amplitude_hours(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 11 and value[8] == "T":
            return datetime.strptime(value, "%Y%m%dT%H").replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _bounded(self) -> ExportInput:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if self.end - self.start > timedelta(days=EXPORT_MAX_DAYS):
            raise ValueError(f"the export range is at most {EXPORT_MAX_DAYS} days")
        return self

    def query_params(self) -> dict[str, str]:
        return {"start": _hour(self.start), "end": _hour(self.end)}


class ExportPreview(BaseModel):
    """What the exposed export returns: the size and the first rows (JSON-safe)."""

    row_count: int
    columns: list[str]
    rows: list[dict[str, Any]]


AmplitudeData = AnalyticsContent  # the name its callers know


def _hour(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.strftime("%Y%m%dT%H")


# -- parsing -----------------------------------------------------------------------------------


def segmentation_result(body: Mapping[str, Any], event_type: str) -> SegmentationResult:
    """``{data: {series, seriesLabels, xValues}}`` -> labelled numeric series."""
    data = body.get("data") or {}
    x_values = [str(x) for x in data.get("xValues") or []]
    raw_series = data.get("series") or []
    labels = data.get("seriesLabels") or []
    series: dict[str, list[float]] = {}
    for position, values in enumerate(raw_series):
        label = _series_label(labels[position] if position < len(labels) else None, event_type)
        name, n = label, 1
        while name in series:
            n += 1
            name = f"{label} ({n})"
        numbers = [float(v) if v is not None else float("nan") for v in values]
        series[name] = (numbers + [float("nan")] * len(x_values))[: len(x_values)]
    return SegmentationResult(x_values=x_values, series=series)


def _series_label(label: Any, event_type: str) -> str:
    """Labels are ``0`` (event index) or ``[0, "group value", ...]`` when grouped."""
    if isinstance(label, list):
        parts = [str(p) for p in label[1:] if p not in (None, "")]
        return " / ".join(parts) or event_type
    if isinstance(label, str) and label:
        return label
    return event_type


def read_export(path: Path, limit: int | None = None) -> pd.DataFrame:
    """Read every ``*.json.gz`` member of an export zip, line by line, into one DataFrame."""
    columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
    count = 0
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            if member.endswith("/") or (limit is not None and count >= limit):
                continue
            with archive.open(member) as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                for line in lines:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    for name, values in columns.items():
                        values.append(record.get(EXPORT_SOURCE_KEYS.get(name, name)))
                    count += 1
                    if limit is not None and count >= limit:
                        break
    return _export_frame(columns)


def _export_frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    for name, dtype in EXPORT_COLUMNS.items():
        if dtype == "datetime":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        elif dtype == "string":
            frame[name] = frame[name].astype("string")
        elif dtype == "Int64":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
        else:
            frame[name] = frame[name].astype(object)
    return frame


def empty_export_frame() -> pd.DataFrame:
    return _export_frame({name: [] for name in EXPORT_COLUMNS})


# -- the provider ------------------------------------------------------------------------------


@third_party(
    identifier=IDENTIFIER,
    title="Amplitude",
    description="Product analytics: event segmentation and raw event exports as tables.",
    category="content",
    fields=[
        CredentialField("api_key", "API key", "secret", help="Project settings > API key."),
        CredentialField("secret_key", "Secret key", "secret", help="Project settings > Secret."),
        CredentialField(
            "region",
            "Data region",
            "select",
            options=("us", "eu"),
            default="us",
            help="eu for projects hosted in Amplitude's EU data center.",
        ),
    ],
)
class AmplitudeProvider(ThirdPartyProvider):
    """Amplitude's Dashboard REST and Export APIs with a project's key pair."""

    default_base_url = REGION_HOSTS["us"]

    # -- where and who -------------------------------------------------------------------------

    def _overridden(self) -> bool:
        """Whether settings (an explicit base URL, or sandbox mode) decide the host."""
        return bool(getattr(self.settings, "amplitude_base_url", None) or self.settings.sandbox)

    def _base_url_for(self, credentials: Mapping[str, str]) -> str:
        """Settings override or sandbox first; otherwise the host of the project's region."""
        if self._overridden():
            return self.base_url
        region = (credentials.get("region") or "us").strip().lower()
        if region not in REGION_HOSTS:
            raise InvalidInput("Amplitude region must be us or eu", {"region": "us or eu"})
        return REGION_HOSTS[region]

    def _url(self, credentials: Mapping[str, str], path: str) -> str:
        return f"{self._base_url_for(credentials)}{path}"

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        api_key = (credentials.get("api_key") or "").strip()
        secret_key = (credentials.get("secret_key") or "").strip()
        if not api_key or not secret_key:
            raise InvalidCredentials(
                "both the API key and the secret key are required", provider=self.identifier
            )
        token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    @asynccontextmanager
    async def _slot(self, credentials: Mapping[str, str]) -> AsyncIterator[None]:
        """Hold one of the project's 5 concurrent-request slots."""
        key = self.fingerprint((credentials.get("api_key") or "").strip())
        async with concurrency_slot(key):
            yield

    async def request(  # type: ignore[override]
        self, method: str, path: str, credentials: Mapping[str, str], **kwargs: Any
    ) -> httpx.Response:
        """The base request, inside the project's concurrency slot."""
        async with self._slot(credentials):
            return await super().request(method, path, credentials, **kwargs)

    # -- the contract --------------------------------------------------------------------------

    async def check_connection(self, credentials: Mapping[str, str]) -> AccountInfo:
        """``GET /api/2/events/list`` proves the key pair; the id is the key's fingerprint.

        Keys are per region: when they fail on the chosen region's host, the other host is
        tried once so the error can say "wrong region" instead of "wrong keys".
        """
        try:
            await self.get_json(self._url(credentials, "/api/2/events/list"), credentials)
        except InvalidCredentials:
            if other := await self._region_that_accepts(credentials):
                raise InvalidInput(
                    f"these Amplitude keys belong to the {other.upper()} region",
                    {"region": f"set the region to {other}"},
                ) from None
            raise
        return AccountInfo(
            id=self.fingerprint(credentials["api_key"].strip()),
            name=credentials.get("label") or self.title,
        )

    async def _region_that_accepts(self, credentials: Mapping[str, str]) -> str | None:
        """The other region, when its host accepts these keys (never with an override)."""
        if self._overridden():
            return None
        region = (credentials.get("region") or "us").strip().lower()
        other = "eu" if region == "us" else "us"
        try:
            await self.get_json(f"{REGION_HOSTS[other]}/api/2/events/list", credentials)
        except ProviderError:
            return None
        return other

    async def send_data(self, credentials: Mapping[str, str], data: Any) -> AmplitudeData:
        """Fetch a table: ``{"kind": "export", ...}`` or a segmentation (the default)."""
        params = _send_input(data)
        if isinstance(params, ExportInput):
            frame = await self.export_frame(credentials, params)
            title = f"Amplitude export {_hour(params.start)}-{_hour(params.end)}"
        else:
            result = await self.event_segmentation(credentials, params)
            frame = result.to_dataframe()
            title = f"Amplitude segmentation: {params.event.event_type} ({params.metric})"
        return AmplitudeData(item=self._summary(title, params, frame), frame=frame)

    # -- exposed functions ---------------------------------------------------------------------

    @expose
    async def event_types(self, credentials: Mapping[str, str], params: NoInput) -> list[str]:
        """This week's event type names (``GET /api/2/events/list``)."""
        body = await self.get_json(self._url(credentials, "/api/2/events/list"), credentials)
        rows = (body.get("data") or []) if isinstance(body, dict) else []
        return [str(r.get("value") or r.get("name")) for r in rows if isinstance(r, dict)]

    @expose
    async def event_segmentation(
        self, credentials: Mapping[str, str], params: SegmentationInput
    ) -> SegmentationResult:
        """Event segmentation series (``to_dataframe()``: date index, numeric columns)."""
        body = await self.get_json(
            self._url(credentials, "/api/2/events/segmentation"),
            credentials,
            params=params.query_params(),
        )
        if not isinstance(body, dict):
            raise Transient("answered segmentation with a non-object body", provider=IDENTIFIER)
        return segmentation_result(body, params.event.event_type)

    @expose
    async def export_events(
        self, credentials: Mapping[str, str], params: ExportInput
    ) -> ExportPreview:
        """Raw events in an hour range: the count and up to ``limit`` (default 100) rows."""
        preview_rows = params.limit or 100
        frame = await self.export_frame(credentials, params)
        head = frame.head(preview_rows)
        rows = json.loads(head.to_json(orient="records", date_format="iso"))
        return ExportPreview(row_count=len(frame), columns=list(frame.columns), rows=rows)

    # -- export --------------------------------------------------------------------------------

    async def export_frame(
        self, credentials: Mapping[str, str], params: ExportInput
    ) -> pd.DataFrame:
        """The export as a DataFrame (empty when Amplitude has no data for the range)."""
        with tempfile.TemporaryDirectory(prefix="arkyra-amplitude-") as folder:
            path = Path(folder) / "export.zip"
            if not await self._download_export(credentials, params, path):
                return empty_export_frame()
            try:
                return await asyncio.to_thread(read_export, path, params.limit)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise Transient(
                    f"sent an export that could not be read ({type(exc).__name__})",
                    provider=self.identifier,
                ) from None

    async def _download_export(
        self, credentials: Mapping[str, str], params: ExportInput, path: Path
    ) -> bool:
        """Stream the zip to ``path`` with retries; ``False`` when the range has no data."""
        url = self._url(credentials, "/api/2/export")
        headers = self.auth_headers(credentials)

        async def attempt() -> bool:
            async with self._slot(credentials):
                try:
                    return await self._stream_to(url, params.query_params(), headers, path)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    raise Transient(
                        f"could not connect ({type(exc).__name__})", provider=self.identifier
                    ) from None
                except httpx.TransportError as exc:
                    raise Transient(
                        f"connection failed ({type(exc).__name__})", provider=self.identifier
                    ) from None

        return await call_with_retries(
            attempt,
            attempts=self.settings.http_max_attempts,
            max_wait=self.settings.retry_after_max_seconds,
        )

    async def _stream_to(
        self, url: str, query: dict[str, str], headers: dict[str, str], path: Path
    ) -> bool:
        async with self.client.stream("GET", url, params=query, headers=headers) as response:
            if response.status_code == 404:
                await response.aread()
                return False
            if self.is_error(response):
                await response.aread()
                raise self.error_from_response(response)
            async with await anyio.open_file(path, "wb") as sink:
                async for chunk in response.aiter_bytes(EXPORT_CHUNK_BYTES):
                    await sink.write(chunk)
        return True

    # -- errors --------------------------------------------------------------------------------

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """Status first; the message from JSON (``error.message`` / ``error``) or text."""
        return self.error_from_status(response, message=_error_message(response))

    def _summary(self, title: str, params: BaseModel, frame: pd.DataFrame) -> ContentItem:
        buffer = io.StringIO()
        frame.head(5).to_string(buffer)
        request = params.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        return ContentItem(
            source=self.identifier,
            id=f"amplitude-{digest}",
            title=title,
            body=f"{len(frame)} rows x {len(frame.columns)} columns\n\n{buffer.getvalue()}",
            fields={
                "request": request,
                "row_count": len(frame),
                "columns": [str(c) for c in frame.columns],
            },
            updated_at=datetime.now(UTC),
        )


def _send_input(data: Any) -> SegmentationInput | ExportInput:
    if isinstance(data, SegmentationInput | ExportInput):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput("amplitude.send_data needs a mapping", {"input": "must be an object"})
    payload = dict(data)
    kind = payload.pop("kind", "segmentation")
    if kind not in ("segmentation", "export"):
        raise InvalidInput("unknown Amplitude data kind", {"kind": "segmentation or export"})
    model = ExportInput if kind == "export" else SegmentationInput
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "input": e["msg"] for e in exc.errors()}
        raise InvalidInput("invalid input for amplitude.send_data", errors) from None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase or "error"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    if isinstance(error, str) and error:
        return error[:500]
    return json.dumps(body)[:300]
