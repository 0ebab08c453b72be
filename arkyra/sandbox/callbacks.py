"""Completion callbacks sent by the sandbox emulators, the way HeyGen, Synthesia and D-ID do.

When an emulated job reaches its end, the emulator POSTs the vendor's completion event to the
URL the client gave (signed when the vendor signs). Jobs here follow the clock, so a callback is
a background task that sleeps until the job's end and then delivers.

Steering, through ``state.store("callbacks")``:

- ``"transport"``: an ``httpx.AsyncBaseTransport`` used for deliveries (an in-process ASGI app
  in tests); default: real HTTP with a short timeout.
- ``"deliveries"``: the log of every attempt (``Delivery``), for tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from arkyra.sandbox.state import SandboxJob, SandboxState

STORE = "callbacks"
DELIVERY_TIMEOUT_SECONDS = 2.0

#: Builds ``(raw body, extra headers)`` for a job that has just finished.
Payload = Callable[[SandboxJob], tuple[bytes, dict[str, str]]]


@dataclass(frozen=True)
class Delivery:
    """One callback attempt: where, for which job, when (monotonic) and what came back."""

    provider: str
    job_id: str
    url: str
    sent_at: float
    job_done_at: float
    status: int | None
    error: str | None = None


def deliveries(state: SandboxState) -> list[Delivery]:
    """The delivery log (shared list; append-only)."""
    with state.lock:
        store = state.stores.setdefault(STORE, {})
        return store.setdefault("deliveries", [])


def schedule(
    state: SandboxState, provider: str, job: SandboxJob, url: str, payload: Payload
) -> asyncio.Task[None]:
    """POST ``payload(job)`` to ``url`` once ``job`` has finished (on the running loop)."""
    task = asyncio.get_running_loop().create_task(_deliver(state, provider, job, url, payload))
    pending: set[asyncio.Task[None]] = state.store(STORE).setdefault("tasks", set())
    pending.add(task)  # keep a reference until done, or the loop may drop the task
    task.add_done_callback(pending.discard)
    return task


async def _deliver(
    state: SandboxState, provider: str, job: SandboxJob, url: str, payload: Payload
) -> None:
    done_at = job.created + job.seconds
    await asyncio.sleep(max(0.0, done_at - time.monotonic()))
    if job.cancelled:
        return
    body, headers = payload(job)
    status: int | None = None
    error: str | None = None
    sent_at = time.monotonic()
    try:
        response = await _client(state).post(
            url, content=body, headers={"content-type": "application/json", **headers}
        )
        status = response.status_code
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    deliveries(state).append(Delivery(provider, job.id, url, sent_at, done_at, status, error))


def _client(state: SandboxState) -> httpx.AsyncClient:
    """One delivery client per loop and transport (building one per callback costs ~20 ms)."""
    transport = state.store(STORE).get("transport")
    loop = asyncio.get_running_loop()
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, httpx.AsyncClient]]
    clients = state.store(STORE).setdefault("clients", weakref.WeakKeyDictionary())
    per_loop = clients.setdefault(loop, {})
    client = per_loop.get(id(transport))
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            transport=transport, timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False
        )
        per_loop[id(transport)] = client
    return client
