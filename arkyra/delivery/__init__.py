"""Reliable outgoing delivery: a persisted outbox, Standard Webhooks signing and the sender.

- :class:`~arkyra.delivery.queue.Outbox` stores each event once per integration (idempotency
  key), with its ``webhook-id``, attempts, next attempt time and last result. Nothing pending
  lives only in memory, so a restart loses no delivery.
- :class:`~arkyra.delivery.worker.DeliveryWorker` claims due deliveries (safe with several
  workers: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one conditional ``UPDATE`` on SQLite, and a
  lease so a crashed worker's claims come back), sends them through the SSRF guard and records
  the outcome.
- :mod:`~arkyra.delivery.signing` signs per Standard Webhooks v1.

Names are loaded lazily so the providers can import :mod:`arkyra.delivery.signing` without
pulling in the database layer.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Outbox": "arkyra.delivery.queue",
    "Enqueued": "arkyra.delivery.queue",
    "ClaimedDelivery": "arkyra.delivery.queue",
    "DeliveryLogEntry": "arkyra.delivery.queue",
    "EndpointState": "arkyra.delivery.queue",
    "RETRY_SCHEDULE_SECONDS": "arkyra.delivery.queue",
    "delivery_log": "arkyra.delivery.queue",
    "DeliveryWorker": "arkyra.delivery.worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'arkyra.delivery' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
