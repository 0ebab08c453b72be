"""Airtable Web API emulator: whoami, bases, table schemas and records with offset pagination.

Follows ``reference/provider-contracts-content-ai.md`` section 3. Auth is
``Authorization: Bearer <token>``; a missing token or one starting with ``invalid`` is 401
``AUTHENTICATION_REQUIRED``. A token containing ``noschema`` lacks ``schema.bases:read`` (the
schema endpoint answers 403 ``INVALID_PERMISSIONS``), one containing ``noemail`` lacks
``user.email:read``.

Records support ``pageSize`` (<= 100), ``offset``, ``view``, ``fields[]``,
``sort[i][field|direction]``, ``maxRecords``, ``returnFieldsByFieldId`` and a small
``filterByFormula`` language (comparisons, ``AND``/``OR``/``NOT``, field truthiness), by GET or by
``POST .../listRecords``. Empty cells are left out of ``fields``, as
Airtable does. The 5 requests per second per base limit is enforced (429
``RATE_LIMIT_REACHED``) unless the store knob ``enforce_rate_limit`` is false.

Generated data: the Posts table has ``seed_records`` records (store knob, default 30);
``POST /airtable/_sandbox/seed?records=N`` regenerates it with N records.
"""

from __future__ import annotations

import re
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState

IDENTIFIER = "airtable"
DEFAULT_RECORDS = 30
MAX_PAGE_SIZE = 100
RATE_PER_BASE = 5
RATE_WINDOW_SECONDS = 0.9  # a little under 1 s: tolerates transport jitter between grants
USER_ID = "usrSandbox0000001"
CONTENT_BASE_ID = "appSandbox0000001"
MARKETING_BASE_ID = "appSandbox0000002"
POSTS_TABLE_ID = "tblPosts00000001"
CAMPAIGNS_TABLE_ID = "tblCampaigns0001"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ("Draft", "Review", "Published")
TAGS = ("video", "blog", "social")

POSTS_FIELDS: list[dict[str, Any]] = [
    {"id": "fldName000000001", "name": "Name", "type": "singleLineText"},
    {"id": "fldBody000000001", "name": "Body", "type": "multilineText"},
    {
        "id": "fldStatus0000001",
        "name": "Status",
        "type": "singleSelect",
        "options": {"choices": [{"id": f"sel{s}", "name": s} for s in STATUSES]},
    },
    {
        "id": "fldTags000000001",
        "name": "Tags",
        "type": "multipleSelects",
        "options": {"choices": [{"id": f"sel{t}", "name": t} for t in TAGS]},
    },
    {"id": "fldViews00000001", "name": "Views", "type": "number", "options": {"precision": 0}},
    {"id": "fldRating0000001", "name": "Rating", "type": "rating", "options": {"max": 5}},
    {"id": "fldPublished0001", "name": "Published", "type": "date"},
    {"id": "fldApproved00001", "name": "Approved", "type": "checkbox"},
    {
        "id": "fldScore00000001",
        "name": "Score",
        "type": "formula",
        "options": {"formula": "{Views} / 10", "result": {"type": "number"}},
    },
    {"id": "fldModified00001", "name": "Last modified", "type": "lastModifiedTime"},
]
CAMPAIGN_FIELDS: list[dict[str, Any]] = [
    {"id": "fldCampaign00001", "name": "Campaign", "type": "singleLineText"},
    {"id": "fldBudget0000001", "name": "Budget", "type": "currency"},
]


# -- errors -----------------------------------------------------------------------------------


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    """Airtable's ``{error:{type,message}}`` for injected faults."""
    if kind == "rate_limit":
        return _error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later")
    kind_name = "SERVICE_UNAVAILABLE" if status == 503 else "SERVER_ERROR"
    return _error(status, kind_name, "Try again. If the problem persists, contact support.")


# -- data generation --------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _post_record(n: int) -> dict[str, Any]:
    views = None if n % 6 == 5 else n * 7
    fields: dict[str, Any] = {
        "Name": f"Post {n}",
        "Body": f"Body of post {n}.\nSecond line.",
        "Status": STATUSES[n % 3],
        "Tags": list(TAGS[: 1 + n % 3]),
        "Views": views,
        "Rating": 1 + n % 5,
        "Published": None if n % 4 == 3 else f"2026-03-{1 + n % 28:02d}",
        "Approved": n % 2 == 0,
        "Score": None if views is None else views / 10,
        "Last modified": _iso(EPOCH + timedelta(hours=n, minutes=5)),
    }
    return {
        "id": f"rec{n:014d}",
        "createdTime": _iso(EPOCH + timedelta(hours=n)),
        "fields": {k: v for k, v in fields.items() if v not in (None, False, [], "")},
    }


def seed(store: dict[str, Any], records: int = DEFAULT_RECORDS) -> None:
    """(Re)generate two bases; the Posts table gets ``records`` records."""
    knobs = {k: store[k] for k in ("enforce_rate_limit", "bases_page_size") if k in store}
    store.clear()
    store.update(knobs)
    store["seed_records"] = records
    posts = {
        "id": POSTS_TABLE_ID,
        "name": "Posts",
        "primaryFieldId": "fldName000000001",
        "fields": POSTS_FIELDS,
        "views": [
            {"id": "viwGrid000000001", "name": "Grid view", "type": "grid"},
            {"id": "viwApproved00001", "name": "Approved", "type": "grid"},
        ],
        "records": [_post_record(n) for n in range(1, records + 1)],
    }
    campaigns = {
        "id": CAMPAIGNS_TABLE_ID,
        "name": "Campaigns",
        "primaryFieldId": "fldCampaign00001",
        "fields": CAMPAIGN_FIELDS,
        "views": [{"id": "viwGrid000000002", "name": "Grid view", "type": "grid"}],
        "records": [
            {
                "id": f"recCampaign{n:06d}",
                "createdTime": _iso(EPOCH),
                "fields": {"Campaign": f"Campaign {n}", "Budget": 1000.0 * n},
            }
            for n in range(1, 4)
        ],
    }
    store["bases"] = {
        CONTENT_BASE_ID: {"name": "Content Hub", "permissionLevel": "create", "tables": [posts]},
        MARKETING_BASE_ID: {"name": "Marketing", "permissionLevel": "read", "tables": [campaigns]},
        "appSandbox0000003": {"name": "Empty base", "permissionLevel": "comment", "tables": []},
    }
    store["hits"] = {}


def _store(state: SandboxState) -> dict[str, Any]:
    store = state.store(IDENTIFIER)
    if "bases" not in store:
        seed(store, int(store.get("seed_records", DEFAULT_RECORDS)))
    return store


def _view_filter(view_name: str, record: dict[str, Any]) -> bool:
    return view_name != "Approved" or bool(record["fields"].get("Approved"))


# -- filterByFormula: a small, honest subset ----------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(\{[^}]*\})|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(\d+(?:\.\d+)?)"
    r"|(!=|>=|<=|=|>|<)|([A-Za-z_]+)|([(),]))"
)


class FormulaError(ValueError):
    pass


def _tokens(formula: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    formula = formula.strip()
    while pos < len(formula):
        match = _TOKEN.match(formula, pos)
        if not match or match.end() == pos:
            raise FormulaError(f"The formula for filtering records is invalid: {formula!r}")
        kinds = ("field", "string", "number", "op", "name", "punct")
        kind = next(k for k, g in zip(kinds, match.groups(), strict=True) if g is not None)
        tokens.append((kind, match.group(match.lastindex or 0)))
        pos = match.end()
        while pos < len(formula) and formula[pos].isspace():
            pos += 1
    return tokens


class _Formula:
    """Recursive descent over ``expr := term (op term)?``, ``term := FUNC(args) | atom``."""

    def __init__(self, formula: str, known: set[str]) -> None:
        self.tokens = _tokens(formula)
        self.pos = 0
        self.known = known
        self.tree = self._expr()
        if self.pos != len(self.tokens):
            raise FormulaError("The formula for filtering records is invalid")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise FormulaError("The formula for filtering records is incomplete")
        self.pos += 1
        return token

    def _expr(self) -> Any:
        left = self._term()
        token = self._peek()
        if token and token[0] == "op":
            self.pos += 1
            return ("cmp", token[1], left, self._term())
        return left

    def _term(self) -> Any:
        kind, text = self._take()
        if kind == "field":
            name = text[1:-1]
            if name not in self.known:
                raise FormulaError(f"Unknown field names: {name.lower()}")
            return ("field", name)
        if kind == "string":
            return ("value", text[1:-1])
        if kind == "number":
            return ("value", float(text))
        if kind == "punct" and text == "(":
            inner = self._expr()
            self._expect(")")
            return inner
        if kind == "name":
            return self._call(text.upper())
        raise FormulaError(f"Unexpected {text!r} in the formula")

    def _expect(self, text: str) -> None:
        if self._take() != ("punct", text):
            raise FormulaError(f"Expected {text!r} in the formula")

    def _call(self, name: str) -> Any:
        if name not in ("AND", "OR", "NOT", "TRUE", "FALSE", "BLANK"):
            raise FormulaError(f"Unknown function {name} in the formula")
        self._expect("(")
        args: list[Any] = []
        while self._peek() != ("punct", ")"):
            args.append(self._expr())
            if self._peek() == ("punct", ","):
                self.pos += 1
        self._expect(")")
        return ("call", name, args)

    def evaluate(self, fields: dict[str, Any]) -> bool:
        return _truthy(_eval(self.tree, fields))


def _eval(node: Any, fields: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "field":
        value = fields.get(node[1])
        return ", ".join(map(str, value)) if isinstance(value, list) else value
    if kind == "call":
        name, args = node[1], [_eval(a, fields) for a in node[2]]
        return {
            "AND": lambda: all(_truthy(a) for a in args),
            "OR": lambda: any(_truthy(a) for a in args),
            "NOT": lambda: not (args and _truthy(args[0])),
            "TRUE": lambda: True,
            "FALSE": lambda: False,
            "BLANK": lambda: None,
        }[name]()
    _, op, left, right = node
    a, b = _eval(left, fields), _eval(right, fields)
    if isinstance(a, bool) or isinstance(b, bool):
        a, b = int(bool(a)), int(bool(b))
    if a is None or b is None:
        a, b = (a if a is not None else ""), (b if b is not None else "")
    if isinstance(a, int | float) != isinstance(b, int | float):
        a, b = str(a), str(b)
    return {
        "=": a == b,
        "!=": a != b,
        ">": a > b,
        "<": a < b,
        ">=": a >= b,
        "<=": a <= b,
    }[op]


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, False, [])


# -- request helpers --------------------------------------------------------------------------


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    return token if token and not token.startswith("invalid") else None


def _unauthorized() -> JSONResponse:
    return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")


def _over_rate(store: dict[str, Any], base_id: str) -> bool:
    """Whether this request is the 6th within the window for ``base_id``."""
    if store.get("enforce_rate_limit") is False:
        return False
    now = time.monotonic()
    hits = store["hits"].setdefault(base_id, deque())
    while hits and hits[0] <= now - RATE_WINDOW_SECONDS:
        hits.popleft()
    if len(hits) >= RATE_PER_BASE:
        return True
    hits.append(now)
    return False


def _rate_limited() -> JSONResponse:
    return _error(429, "RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later")


def _find_table(base: dict[str, Any], table: str) -> dict[str, Any] | None:
    return next((t for t in base["tables"] if table in (t["id"], t["name"])), None)


def _sort_specs(params: dict[str, Any]) -> list[dict[str, str]]:
    return [s for s in params.get("sort") or [] if isinstance(s, dict)]


def _query_params(request: Request) -> dict[str, Any]:
    """GET query parameters in the shape of the listRecords body."""
    query = request.query_params
    params: dict[str, Any] = {k: query[k] for k in query if "[" not in k}
    params["fields"] = query.getlist("fields[]")
    sorts: dict[int, dict[str, str]] = {}
    for key, value in query.multi_items():
        match = re.fullmatch(r"sort\[(\d+)\]\[(field|direction)\]", key)
        if match:
            sorts.setdefault(int(match.group(1)), {})[match.group(2)] = value
    params["sort"] = [sorts[i] for i in sorted(sorts)]
    return params


def _list_records(table: dict[str, Any], params: dict[str, Any]) -> JSONResponse:
    try:
        size = int(params.get("pageSize") or MAX_PAGE_SIZE)
        limit = int(params["maxRecords"]) if params.get("maxRecords") else None
    except (TypeError, ValueError):
        return _error(
            422, "INVALID_REQUEST_UNKNOWN", "Invalid request: parameter validation failed"
        )
    if not 1 <= size <= MAX_PAGE_SIZE:
        return _error(422, "INVALID_REQUEST_UNKNOWN", "pageSize must be between 1 and 100")
    known = {f["name"] for f in table["fields"]}
    wanted = [str(f) for f in params.get("fields") or []]
    unknown = [f for f in wanted if f not in known]
    if unknown:
        return _error(422, "UNKNOWN_FIELD_NAME", f"Unknown field name: {unknown[0]!r}")
    records = list(table["records"])
    view = params.get("view")
    if view:
        match = next((v for v in table["views"] if view in (v["id"], v["name"])), None)
        if match is None:
            return _error(422, "VIEW_NAME_NOT_FOUND", f"Could not find view {view!r} in table")
        records = [r for r in records if _view_filter(match["name"], r)]
    formula = params.get("filterByFormula")
    if formula:
        try:
            parsed = _Formula(str(formula), known)
            records = [r for r in records if parsed.evaluate(r["fields"])]
        except FormulaError as exc:
            return _error(422, "INVALID_FILTER_BY_FORMULA", str(exc))
    for spec in reversed(_sort_specs(params)):
        name = spec.get("field")
        if name not in known:
            return _error(422, "UNKNOWN_FIELD_NAME", f"Unknown field name: {name!r}")
        present = [r for r in records if r["fields"].get(name) is not None]
        empty = [r for r in records if r["fields"].get(name) is None]
        present.sort(key=lambda r, n=name: r["fields"][n], reverse=spec.get("direction") == "desc")
        records = present + empty
    if limit is not None:
        records = records[:limit]
    start = 0
    offset = params.get("offset")
    if offset:
        start = _offset_start(str(offset), records)
        if start < 0:
            return _error(422, "INVALID_OFFSET_VALUE", "The offset is invalid or has expired")
    chunk = records[start : start + size]
    if wanted:
        chunk = [
            {**r, "fields": {k: v for k, v in r["fields"].items() if k in wanted}} for r in chunk
        ]
    by_id = str(params.get("returnFieldsByFieldId")).lower() == "true"
    if by_id:
        ids = {f["name"]: f["id"] for f in table["fields"]}
        chunk = [{**r, "fields": {ids[k]: v for k, v in r["fields"].items()}} for r in chunk]
    body: dict[str, Any] = {"records": chunk}
    nxt = start + size
    if nxt < len(records):
        body["offset"] = f"itr{nxt:08d}/{records[nxt]['id']}"
    return JSONResponse(body)


def _offset_start(offset: str, records: list[dict[str, Any]]) -> int:
    match = re.fullmatch(r"itr(\d{8})/(rec\w+)", offset)
    if not match:
        return -1
    start = int(match.group(1))
    if start >= len(records) or records[start]["id"] != match.group(2):
        return -1
    return start


# -- routes -----------------------------------------------------------------------------------


def routes(state: SandboxState) -> list[BaseRoute]:
    async def whoami(request: Request) -> Response:
        token = _token(request)
        if token is None:
            return _unauthorized()
        scopes = ["data.records:read"]
        if "noschema" not in token:
            scopes.append("schema.bases:read")
        body: dict[str, Any] = {"id": USER_ID, "scopes": scopes}
        if "noemail" not in token:
            scopes.append("user.email:read")
            body["email"] = "sandbox@example.com"
        return JSONResponse(body)

    async def bases(request: Request) -> Response:
        if _token(request) is None:
            return _unauthorized()
        store = _store(state)
        entries = [
            {"id": base_id, "name": base["name"], "permissionLevel": base["permissionLevel"]}
            for base_id, base in store["bases"].items()
        ]
        size = int(store.get("bases_page_size", 1000))
        try:
            start = int(request.query_params.get("offset") or 0)
        except ValueError:
            return _error(422, "INVALID_OFFSET_VALUE", "The offset is invalid")
        body: dict[str, Any] = {"bases": entries[start : start + size]}
        if start + size < len(entries):
            body["offset"] = str(start + size)
        return JSONResponse(body)

    async def tables(request: Request) -> Response:
        token = _token(request)
        if token is None:
            return _unauthorized()
        store = _store(state)
        base = store["bases"].get(request.path_params["base_id"])
        if base is None:
            return JSONResponse({"error": "NOT_FOUND"}, status_code=404)
        if "noschema" in token:
            return _error(403, "INVALID_PERMISSIONS", "Token lacks the schema.bases:read scope")
        if _over_rate(store, request.path_params["base_id"]):
            return _rate_limited()
        public = [{k: v for k, v in t.items() if k != "records"} for t in base["tables"]]
        return JSONResponse({"tables": public})

    async def records(request: Request) -> Response:
        if _token(request) is None:
            return _unauthorized()
        store = _store(state)
        base_id = request.path_params["base_id"]
        base = store["bases"].get(base_id)
        if base is None:
            return _error(
                403,
                "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
                "Invalid permissions, or the requested model was not found.",
            )
        if _over_rate(store, base_id):
            return _rate_limited()
        table = _find_table(base, request.path_params["table"])
        if table is None:
            return _error(404, "TABLE_NOT_FOUND", "Could not find table in the base")
        if request.method == "POST":
            try:
                params = await request.json()
            except ValueError:
                return _error(422, "INVALID_REQUEST_UNKNOWN", "Invalid JSON body")
            if not isinstance(params, dict):
                return _error(422, "INVALID_REQUEST_UNKNOWN", "Body must be an object")
        else:
            params = _query_params(request)
        return _list_records(table, params)

    async def seed_route(request: Request) -> Response:
        try:
            count = int(request.query_params.get("records", DEFAULT_RECORDS))
        except ValueError:
            return JSONResponse({"error": "records must be an integer"}, status_code=400)
        if not 0 <= count <= 100_000:
            return JSONResponse({"error": "records must be between 0 and 100000"}, status_code=400)
        seed(state.store(IDENTIFIER), count)
        return JSONResponse(
            {"base_id": CONTENT_BASE_ID, "table_id": POSTS_TABLE_ID, "records": count}
        )

    return [
        Route("/v0/meta/whoami", whoami, methods=["GET"]),
        Route("/v0/meta/bases", bases, methods=["GET"]),
        Route("/v0/meta/bases/{base_id}/tables", tables, methods=["GET"]),
        Route("/_sandbox/seed", seed_route, methods=["POST"]),
        Route("/v0/{base_id}/{table}/listRecords", records, methods=["POST"]),
        Route("/v0/{base_id}/{table}", records, methods=["GET"]),
    ]
