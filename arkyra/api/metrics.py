"""Prometheus metrics: request latency and status per route template (never per raw path).

Metrics live in the default registry so other modules (the AI router) can add their own and
``GET /metrics`` shows them all. Unmatched paths share one label so scanners cannot explode
the label space.
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"

REQUEST_LATENCY = Histogram(
    "arkyra_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ("method", "route", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUESTS = Counter(
    "arkyra_http_requests",
    "HTTP requests by method, route template and status.",
    ("method", "route", "status"),
)
CACHE_LOOKUPS = Counter(
    "arkyra_function_cache_lookups",
    "Exposed-function cache lookups by provider and outcome (hit or miss).",
    ("identifier", "outcome"),
)
JOBS = Counter(
    "arkyra_api_jobs",
    "API background jobs by provider and final state.",
    ("identifier", "state"),
)


def route_template(scope: Scope) -> str:
    """``/third-party/{id}``, not ``/third-party/3f2a...``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Times every HTTP request and counts it by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            labels = (scope.get("method", "GET"), route_template(scope), str(status))
            REQUEST_LATENCY.labels(*labels).observe(time.perf_counter() - started)
            REQUESTS.labels(*labels).inc()


def render_metrics(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
