"""The AI router: fallback chains, circuit breakers, budgets, usage, prices and metrics.

Names are imported lazily so that ``arkyra.router.pricing`` (used by every AI provider) does not
pull in the database layer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AllProvidersFailed": "arkyra.router.service",
    "Attempt": "arkyra.router.service",
    "Router": "arkyra.router.service",
    "RouterPolicy": "arkyra.router.service",
    "RouteInfo": "arkyra.router.service",
    "RoutedStream": "arkyra.router.service",
    "ChainConfig": "arkyra.router.chain",
    "DEFAULT_CHAIN": "arkyra.router.chain",
    "CircuitBreaker": "arkyra.router.breaker",
    "BreakerPolicy": "arkyra.router.breaker",
    "QuotaExceeded": "arkyra.router.quota",
    "QuotaService": "arkyra.router.quota",
    "UsageWriter": "arkyra.router.usage",
    "IdempotencyStore": "arkyra.router.idempotency",
    "PriceTable": "arkyra.router.pricing",
    "Cost": "arkyra.router.pricing",
    "default_price_table": "arkyra.router.pricing",
    "estimate_input_tokens": "arkyra.router.pricing",
    "provider_metrics": "arkyra.router.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arkyra.router' has no attribute {name!r}")
    return getattr(import_module(module), name)
