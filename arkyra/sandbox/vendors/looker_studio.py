"""Looker Studio API emulator (reference section 5): ``GET /looker-studio/v1/assets:search``.

There is no data API to emulate. The search needs a bearer token with a ``datastudio`` scope,
which the ``google-oauth`` emulator only issues with domain-wide delegation (a ``sub`` claim);
a token without a delegated user answers 403. Assets are visible to their owner and viewers.
Pagination is ``pageSize``/``pageToken``/``nextPageToken``.

Seed with :func:`seed_assets` or ``POST /looker-studio/_sandbox/assets`` (body ``{owner,
viewers?, reports?: N, data_sources?: N}``).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from arkyra.sandbox.state import SandboxState
from arkyra.sandbox.vendors.google_oauth import api_error_response, authorize, google_error

IDENTIFIER = "looker-studio"
SERVICE = "datastudio.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/datastudio.readonly",
    "https://www.googleapis.com/auth/datastudio",
)
ASSET_TYPES = ("REPORT", "DATA_SOURCE")
MAX_PAGE_SIZE = 1000


def seed_assets(
    state: SandboxState,
    *,
    owner: str,
    viewers: Iterable[str] = (),
    reports: int = 3,
    data_sources: int = 1,
) -> list[str]:
    """Store ``reports`` reports and ``data_sources`` data sources owned by ``owner``."""
    assets = state.store(IDENTIFIER).setdefault("assets", [])
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = []
    for asset_type, count in (("REPORT", reports), ("DATA_SOURCE", data_sources)):
        for i in range(count):
            asset_id = str(uuid.uuid4())
            stamp = (created + dt.timedelta(days=len(assets))).isoformat().replace("+00:00", "Z")
            label = "Report" if asset_type == "REPORT" else "Data source"
            assets.append(
                {
                    "name": asset_id,
                    "title": f"{label} {i + 1}",
                    "assetType": asset_type,
                    "owner": owner,
                    "creator": owner,
                    "createTime": stamp,
                    "updateTime": stamp,
                    "lastViewByMeTime": stamp,
                    "trashed": False,
                    "_viewers": sorted({owner, *viewers}),
                }
            )
            ids.append(asset_id)
    return ids


def _public(asset: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in asset.items() if not k.startswith("_")}


def routes(state: SandboxState) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        token = authorize(state, request, SCOPES)
        if isinstance(token, Response):
            return token
        if not token.subject:
            return google_error(
                403,
                "The caller does not have permission: the Looker Studio API needs a Google "
                "Workspace user (domain-wide delegation).",
            )
        query = request.query_params
        asset_type = query.get("assetTypes")
        if asset_type not in ASSET_TYPES:
            return google_error(400, "Request contains an invalid argument: assetTypes.")
        try:
            size = min(MAX_PAGE_SIZE, int(query.get("pageSize") or 100))
            offset = (
                int(base64.urlsafe_b64decode(query["pageToken"]).decode())
                if (query.get("pageToken"))
                else 0
            )
        except ValueError:
            return google_error(400, "Request contains an invalid argument: pageToken.")
        title = (query.get("title") or "").lower()
        owner = query.get("owner")
        include_trashed = query.get("includeTrashed", "false").lower() == "true"
        matches = [
            a
            for a in state.store(IDENTIFIER).get("assets", [])
            if a["assetType"] == asset_type
            and token.subject in a["_viewers"]
            and (not title or title in a["title"].lower())
            and (not owner or a["owner"] == owner)
            and (include_trashed or not a["trashed"])
        ]
        if query.get("orderBy") == "title":
            matches.sort(key=lambda a: a["title"])
        body: dict[str, Any] = {"assets": [_public(a) for a in matches[offset : offset + size]]}
        if offset + size < len(matches):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return JSONResponse(body)

    async def seed(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("owner"):
            return JSONResponse({"error": "owner is required"}, status_code=400)
        ids = seed_assets(
            state,
            owner=body["owner"],
            viewers=body.get("viewers") or [],
            reports=int(body.get("reports", 3)),
            data_sources=int(body.get("data_sources", 1)),
        )
        return JSONResponse({"assets": ids}, status_code=201)

    return [
        Route("/v1/assets:search", search, methods=["GET"]),
        Route("/_sandbox/assets", seed, methods=["POST"]),
    ]


def error_response(kind: str, status: int, retry_after: float | None) -> Response:
    return api_error_response(kind, status, retry_after, service=SERVICE)
