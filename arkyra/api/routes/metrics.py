"""``GET /metrics``: Prometheus exposition of every metric in the default registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from arkyra.api.metrics import render_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics() -> Response:
    """Latency and status per route template, cache lookups, jobs, and other modules' metrics."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
