"""``GET /metrics``: Prometheus exposition of every metric in the default registry.

Open by default (scrapers usually sit beside the service); with ``ARKYRA_METRICS_TOKEN`` set,
a scrape must send that token as a bearer token (Prometheus: ``authorization.credentials``).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Response

from arkyra.api.deps import SettingsDep
from arkyra.api.metrics import render_metrics
from arkyra.security.tokens import InvalidToken

router = APIRouter(tags=["operations"])


def check_scrape_token(settings: SettingsDep, authorization: str | None) -> None:
    """Refuse the scrape unless it carries ``settings.metrics_token`` (when one is set)."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not expected:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidToken("metrics need the scrape token (ARKYRA_METRICS_TOKEN) as a bearer token")


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Latency and status per route template, cache lookups, jobs, and other modules' metrics."""
    check_scrape_token(settings, authorization)
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
