"""PostHog emulator: identity, HogQL queries (blocking and async) and the events list.

Follows ``reference/provider-contracts-content-ai.md`` section 6:

- ``Authorization: Bearer phx_...``; a project key (``phc_...``) or an unknown key is a 401
  ``authentication_error``. Keys listed in ``store["revoked_keys"]`` are refused too.
- ``POST /api/projects/{id}/query/`` answers 200 with ``results/columns/types/hasMore``, or, for
  ``refresh: "async" | "force_async"`` (or with ``store["async_queries"] = True``), 202 with a
  ``query_status`` whose job follows the clock (``faults.job_seconds``).
  ``GET .../query/{query_id}/`` is 202 while running, 200 when complete, 400 when failed.
- ``GET /api/projects/{id}/events/?limit&offset&event&after&before`` lists seeded events, newest
  first, with an absolute ``next`` URL.

Store knobs (``state.store("posthog")``): ``event_count`` (default 250), ``query_budget_per_hour``
(HogQL budget; default none), ``async_queries``, ``revoked_keys``.
Not emulated: HogQL itself. The answer is an event summary (``event``, ``count()``,
``max(timestamp)``) over the seeded events; a query that is not a SELECT is a HogQL error.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "posthog"

EVENT_NAMES = ("$pageview", "signed_up", "video_rendered", "$autocapture", "purchase")
EPOCH = datetime(2026, 10, 1, tzinfo=UTC)
DEFAULT_EVENT_COUNT = 250
DEFAULT_QUERY_LIMIT = 100

SUMMARY_COLUMNS = ["event", "count()", "max(timestamp)"]
SUMMARY_TYPES = ["String", "UInt64", "DateTime64(6, 'UTC')"]


def error_body(kind: str, code: str, detail: str) -> dict[str, Any]:
    """PostHog's DRF error body."""
    return {"type": kind, "code": code, "detail": detail, "attr": None}


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Injected faults in PostHog's own shape (``throttled_error`` sets Retry-After)."""
    if kind == "rate_limit" or status == 429:
        wait = int(retry_after or 1)
        body = error_body(
            "throttled_error",
            "throttled",
            f"Request was throttled. Expected available in {wait} s.",
        )
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(wait)})
    if status == 504:
        body = error_body("server_error", "query_timeout", "Query exceeded the maximum time.")
    elif status == 402:
        body = error_body("quota_limit_exceeded", "quota_limit_exceeded", "Quota exceeded.")
    else:
        body = error_body("server_error", "error", "A server error occurred.")
    return JSONResponse(body, status_code=status)


def _fail(status: int, kind: str, code: str, detail: str) -> JSONResponse:
    return JSONResponse(error_body(kind, code, detail), status_code=status)


def _authenticate(request: Request, state: SandboxState) -> JSONResponse | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        detail = "Authentication credentials were not provided."
        return _fail(401, "authentication_error", "not_authenticated", detail)
    revoked = state.store(IDENTIFIER).get("revoked_keys", ())
    if not token.startswith("phx_") or token in revoked:
        return _fail(401, "authentication_error", "authentication_failed", "Invalid API key.")
    return None


def _project_id(request: Request) -> str | None:
    project_id = request.path_params["project_id"]
    return project_id if project_id.isdigit() else None


def _seeded_events(state: SandboxState) -> list[dict[str, Any]]:
    """The same events every time for a given ``event_count``: newest first, 1 minute apart."""
    store = state.store(IDENTIFIER)
    count = int(store.get("event_count", DEFAULT_EVENT_COUNT))
    cached = store.get("_events")
    if cached is not None and len(cached) == count:
        return cached
    events = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "distinct_id": f"user-{i % 17}",
            "event": EVENT_NAMES[i % len(EVENT_NAMES)],
            "timestamp": (EPOCH - timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            "properties": {"$current_url": f"https://example.com/p/{i % 9}", "n": i},
            "elements": [],
            "elements_chain": "",
            "person": None,
        }
        for i in range(count)
    ]
    store["_events"] = events
    return events


def _matches(event: dict[str, Any], params: Any) -> bool:
    """The list filters; ``after``/``before`` only when given (no 24-hour default here)."""
    if params.get("event") and event["event"] != params["event"]:
        return False
    if params.get("distinct_id") and event["distinct_id"] != params["distinct_id"]:
        return False
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    for name, keep in (("after", lambda t, b: t > b), ("before", lambda t, b: t < b)):
        if params.get(name):
            bound = datetime.fromisoformat(params[name].replace("Z", "+00:00"))
            bound = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
            if not keep(stamp, bound):
                return False
    return True


def _summary(events: list[dict[str, Any]]) -> list[list[Any]]:
    rows: dict[str, list[Any]] = {}
    for event in events:
        row = rows.setdefault(event["event"], [event["event"], 0, event["timestamp"]])
        row[1] += 1
        row[2] = max(row[2], event["timestamp"])
    return sorted(rows.values(), key=lambda r: -r[1])


def _query_response(state: SandboxState, sql: str) -> dict[str, Any]:
    match = re.search(r"\bLIMIT\s+(\d+)", sql, re.IGNORECASE)
    limit = int(match.group(1)) if match else DEFAULT_QUERY_LIMIT
    rows = _summary(_seeded_events(state))
    return {
        "results": rows[:limit],
        "columns": SUMMARY_COLUMNS,
        "types": SUMMARY_TYPES,
        "hasMore": len(rows) > limit,
        "limit": limit,
        "offset": 0,
        "hogql": sql,
        "clickhouse": "SELECT ...",
        "timings": [],
        "modifiers": {},
        "error": None,
    }


def _over_budget(state: SandboxState) -> float | None:
    """Seconds until the HogQL budget frees a slot, or ``None`` when within it."""
    store = state.store(IDENTIFIER)
    budget = store.get("query_budget_per_hour")
    if budget is None:
        return None
    now = time.monotonic()
    window: deque[float] = store.setdefault("_query_times", deque())
    while window and now - window[0] >= 3600:
        window.popleft()
    if len(window) >= int(budget):
        return max(1.0, 3600 - (now - window[0]))
    window.append(now)
    return None


def _status_body(state: SandboxState, job_id: str) -> tuple[int, dict[str, Any]]:
    job = state.job(IDENTIFIER, job_id)
    assert job is not None
    phase = job.phase()
    status: dict[str, Any] = {
        "id": job.id,
        "query_async": True,
        "team_id": int(job.data["project_id"]),
        "complete": phase in ("succeeded", "failed"),
        "error": phase == "failed",
        "error_message": "Query failed: memory limit exceeded" if phase == "failed" else None,
        "results": None,
        "start_time": None,
        "end_time": None,
    }
    if phase == "succeeded":
        status["results"] = _query_response(state, job.data["sql"])
        return 200, {"query_status": status}
    if phase == "failed":
        return 400, {"query_status": status}
    return 202, {"query_status": status}


def routes(state: SandboxState) -> list[BaseRoute]:
    async def me(request: Request) -> Response:
        if denied := _authenticate(request, state):
            return denied
        return JSONResponse(
            {
                "uuid": "0190a1b2-0000-7000-8000-000000000001",
                "email": "analyst@example.com",
                "first_name": "Ada",
                "last_name": "Analyst",
                "team": {"id": 1, "uuid": "0190a1b2-0000-7000-8000-0000000000aa", "name": "Web"},
                "organization": {"id": "0190a1b2-0000-7000-8000-0000000000ff", "name": "Acme"},
                "organizations": [
                    {"id": "0190a1b2-0000-7000-8000-0000000000ff", "name": "Acme"},
                ],
            }
        )

    async def create_query(request: Request) -> Response:
        if denied := _authenticate(request, state):
            return denied
        project_id = _project_id(request)
        if project_id is None:
            return _fail(404, "invalid_request", "not_found", "Not found.")
        try:
            body = await request.json()
        except ValueError:
            return _fail(400, "validation_error", "parse_error", "JSON parse error.")
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, dict) or query.get("kind") != "HogQLQuery":
            return _fail(400, "validation_error", "invalid_input", "query.kind must be a query.")
        sql = str(query.get("query") or "")
        if not re.match(r"^\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            return _fail(400, "validation_error", "syntax_error", "Syntax error at line 1.")
        if (wait := _over_budget(state)) is not None:
            return JSONResponse(
                error_body("throttled_error", "throttled", "Request was throttled."),
                status_code=429,
                headers={"Retry-After": f"{int(wait)}"},
            )
        store = state.store(IDENTIFIER)
        if body.get("refresh") in ("async", "force_async") or store.get("async_queries"):
            job = state.new_job(IDENTIFIER, uuid.uuid4().hex, project_id=project_id, sql=sql)
            return JSONResponse(
                {"query_status": {"id": job.id, "complete": False, "query_async": True}},
                status_code=202,
            )
        return JSONResponse(_query_response(state, sql))

    async def query_status(request: Request) -> Response:
        if denied := _authenticate(request, state):
            return denied
        if _project_id(request) is None or not state.job(
            IDENTIFIER, request.path_params["query_id"]
        ):
            return _fail(404, "invalid_request", "not_found", "Not found.")
        status, body = _status_body(state, request.path_params["query_id"])
        return JSONResponse(body, status_code=status)

    async def list_events(request: Request) -> Response:
        if denied := _authenticate(request, state):
            return denied
        if _project_id(request) is None:
            return _fail(404, "invalid_request", "not_found", "Not found.")
        params = request.query_params
        try:
            limit = min(int(params.get("limit", 100)), 10_000)
            offset = int(params.get("offset", 0))
        except ValueError:
            return _fail(400, "validation_error", "invalid_input", "limit must be an integer.")
        if offset > 50_000:
            return _fail(400, "validation_error", "invalid_input", "Offset is too large.")
        try:
            events = [e for e in _seeded_events(state) if _matches(e, params)]
        except ValueError:
            return _fail(400, "validation_error", "invalid_input", "after/before must be ISO.")
        page = events[offset : offset + limit]
        next_url = None
        if offset + limit < len(events):
            next_url = str(request.url.include_query_params(offset=offset + limit, limit=limit))
        return JSONResponse({"next": next_url, "results": page})

    return [
        Route("/api/users/@me/", me, methods=["GET"]),
        Route("/api/projects/{project_id}/query/", create_query, methods=["POST"]),
        Route("/api/projects/{project_id}/query/{query_id}/", query_status, methods=["GET"]),
        Route("/api/projects/{project_id}/events/", list_events, methods=["GET"]),
    ]
