"""Per-provider metrics: Prometheus series for scraping, and a rolling window for the API.

The Prometheus collectors are module-level, so they are registered exactly once per process.
:func:`provider_metrics` answers from an in-process window (the last ``WINDOW_SECONDS``, at most
``WINDOW_SIZE`` calls per provider) because Prometheus histograms cannot give exact percentiles.
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal
from threading import Lock
from typing import Any

from prometheus_client import Counter, Histogram

WINDOW_SECONDS = 300.0
WINDOW_SIZE = 2_000

LATENCY = Histogram(
    "arkyra_ai_provider_latency_seconds",
    "Latency of one AI provider attempt.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REQUESTS = Counter(
    "arkyra_ai_provider_requests",
    "AI provider attempts by outcome (ok or the error class).",
    ["provider", "outcome"],
)
COST = Counter(
    "arkyra_ai_provider_cost_usd", "Cost of successful AI attempts in USD.", ["provider"]
)


class _Window:
    """Recent (time, latency, ok, cost) samples for one provider."""

    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float, bool, float]] = deque(maxlen=WINDOW_SIZE)

    def recent(self, now: float) -> list[tuple[float, float, bool, float]]:
        horizon = now - WINDOW_SECONDS
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        return list(self.samples)


_windows: dict[str, _Window] = {}
_lock = Lock()


def record(
    provider: str,
    latency_seconds: float,
    *,
    ok: bool,
    outcome: str = "ok",
    cost: Decimal = Decimal(0),
) -> None:
    """Count one attempt (a few microseconds: called on the hot path)."""
    LATENCY.labels(provider).observe(latency_seconds)
    REQUESTS.labels(provider, "ok" if ok else outcome).inc()
    amount = float(cost)
    if amount:
        COST.labels(provider).inc(amount)
    window = _windows.get(provider)
    if window is None:
        with _lock:
            window = _windows.setdefault(provider, _Window())
    window.samples.append((time.monotonic(), latency_seconds, ok, amount))


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def provider_metrics(identifier: str) -> dict[str, Any]:
    """p50/p95 latency (ms), success and error rates, cost and request count, recent window."""
    window = _windows.get(identifier)
    samples = window.recent(time.monotonic()) if window else []
    requests = len(samples)
    successes = sum(1 for s in samples if s[2])
    latencies = sorted(s[1] * 1000.0 for s in samples)
    p50 = _percentile(latencies, 0.50)
    p95 = _percentile(latencies, 0.95)
    return {
        "provider": identifier,
        "window_seconds": WINDOW_SECONDS,
        "requests": requests,
        "success_rate": successes / requests if requests else None,
        "error_rate": (requests - successes) / requests if requests else None,
        "latency_p50_ms": round(p50, 3) if p50 is not None else None,
        "latency_p95_ms": round(p95, 3) if p95 is not None else None,
        "cost_usd": round(sum(s[3] for s in samples), 9),
    }


def reset(identifier: str | None = None) -> None:
    """Forget the rolling window (tests); Prometheus counters are never reset."""
    with _lock:
        if identifier is None:
            _windows.clear()
        else:
            _windows.pop(identifier, None)
