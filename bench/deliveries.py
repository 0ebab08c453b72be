"""Outgoing delivery throughput and the memory held by a queued backlog.

    .venv/bin/python bench/deliveries.py [--events 2000] [--concurrency 50] [--pg URL]
                                         [--receiver thread|process]

- deliveries per second to a real uvicorn receiver on 127.0.0.1 (the sandbox's ``receiver``
  emulator, served by ``running_sandbox`` in a thread of this process, or with
  ``--receiver process`` by ``arkyra.sandbox.server.serve`` in a child process, so that it does
  not share this process's GIL), at 50 concurrent deliveries, two ways: the raw signed POST
  through the SSRF-guarded client (no database), and
  the whole worker path (claim from the outbox, sign, send, record) on SQLite and, with --pg,
  PostgreSQL;
- memory held by 10,000 queued deliveries (tracemalloc): after enqueueing them (they live in
  the database, so this should stay small) and while one worker holds all 10,000 claimed.

Prints Markdown ready for bench/results/deliveries.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arkyra.config import Settings
from arkyra.db import migrate
from arkyra.db.session import Database, sync_url
from arkyra.delivery import signing
from arkyra.delivery.queue import Outbox
from arkyra.delivery.worker import DeliveryWorker
from arkyra.http.ssrf import guarded_client
from arkyra.providers import get_provider
from arkyra.providers.automation._hooks import HookProvider, send_prepared
from arkyra.sandbox.server import running_sandbox

ORG = "org_bench"
INTEGRATION = "int-bench"
SECRET = signing.generate_secret()


def settings_for(home: Path, database_url: str, sandbox_url: str) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        sandbox=True,
        sandbox_url=sandbox_url,
        ssrf_allow_loopback=True,
        fingerprint_key="bench-fingerprint-key-0000000000000",
        encryption_keys="b1:" + "A" * 42 + "Q",
        jwt_secret="bench-jwt-secret-000000000000000000000000",
    )  # type: ignore[call-arg]


async def raw_send_rate(settings: Settings, url: str, events: int, concurrency: int) -> float:
    """Signed POSTs through the guarded client, ``concurrency`` at a time, no database."""
    provider = get_provider("webhooks", settings=settings)
    assert isinstance(provider, HookProvider)
    credentials = {"url": url, "secret": SECRET}
    gate = asyncio.Semaphore(concurrency)
    async with guarded_client(settings) as client:

        async def one(i: int) -> bool:
            async with gate:
                message = provider.message("bench.event", {"i": i})
                prepared = provider.prepare_delivery(credentials, message, int(time.time()))
                return (await send_prepared(client, prepared, settings=settings)).ok

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(events)))
        elapsed = time.perf_counter() - started
    assert all(results), "some raw deliveries failed"
    return events / elapsed


async def worker_rate(settings: Settings, url: str, events: int, concurrency: int) -> float:
    """Enqueue ``events``, then time a worker draining them at ``concurrency``."""
    db = Database(settings.effective_database_url)
    outbox = Outbox(db)
    integration = f"{INTEGRATION}-{uuid.uuid4().hex[:8]}"
    for i in range(events):
        await outbox.enqueue(
            organization_id=ORG,
            integration_id=integration,
            identifier="webhooks",
            event_type="bench.event",
            data={"i": i},
        )

    async def lookup(org: str, integration_id: str) -> Mapping[str, str]:
        return {"url": url, "secret": SECRET}

    worker = DeliveryWorker(
        db, lookup, settings=settings, batch_size=concurrency * 4, concurrency=concurrency
    )
    started = time.perf_counter()
    sent = await worker.drain()
    elapsed = time.perf_counter() - started
    delivered = await outbox.log(ORG, integration, limit=1, status="delivered")
    await worker.aclose()
    await db.dispose()
    if sent != events or not delivered:
        raise RuntimeError("the worker did not deliver everything")
    return events / elapsed


async def backlog_memory(settings: Settings, count: int) -> tuple[float, float, float]:
    """KiB held after enqueueing ``count`` deliveries, while all are claimed, and the peak."""
    db = Database(settings.effective_database_url)
    outbox = Outbox(db)
    integration = f"{INTEGRATION}-mem-{uuid.uuid4().hex[:8]}"
    await outbox.enqueue(organization_id=ORG, integration_id=integration, identifier="webhooks",
                         event_type="bench.event", data={"warm": True})  # fmt: skip
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for i in range(count):
        await outbox.enqueue(
            organization_id=ORG,
            integration_id=integration,
            identifier="webhooks",
            event_type="bench.event",
            data={"video_id": f"v{i:06d}", "url": f"https://cdn.example.com/v{i:06d}.mp4"},
        )
    queued = _kib_since(base)
    claimed = await outbox.claim(count + 1)
    held = _kib_since(base)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(claimed) == count + 1
    await db.dispose()
    return queued, held, peak / 1024


def _kib_since(base: tracemalloc.Snapshot) -> float:
    stats = tracemalloc.take_snapshot().compare_to(base, "filename")
    return sum(stat.size_diff for stat in stats) / 1024


def fresh_pg(url: str) -> tuple[str, str]:
    admin = create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
    name = f"arkyra_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False), name


def drop_pg(url: str, name: str) -> None:
    admin = create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def receiver(kind: str) -> Iterator[str]:
    """The sandbox's base URL, served in a thread of this process or in a child process."""
    if kind == "thread":
        with running_sandbox() as sandbox:
            yield sandbox.url
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from arkyra.sandbox.server import serve; serve(port={port})"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the receiver process did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(timeout=10)


def accepted_ids(base_url: str) -> int:
    """Distinct webhook-ids the receiver accepted on the bench path (its control route)."""
    answer = httpx.get(f"{base_url}/receiver/_control/bench", timeout=30)
    answer.raise_for_status()
    return len(answer.json()["accepted_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--pg", help="a PostgreSQL URL whose server may create a scratch DB")
    parser.add_argument("--receiver", choices=("thread", "process"), default="thread")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, receiver(args.receiver) as sandbox_url:
        home = Path(tmp)
        url = f"{sandbox_url}/receiver/bench"
        backends = {"SQLite": f"sqlite:///{home / 'bench.db'}"}
        scratch: tuple[str, str] | None = None
        if args.pg:
            scratch = fresh_pg(args.pg)
            backends["PostgreSQL"] = scratch[0]
        try:
            rows = []
            sqlite_settings = settings_for(home, backends["SQLite"], sandbox_url)
            raw = asyncio.run(raw_send_rate(sqlite_settings, url, args.events, args.concurrency))
            rows.append(("raw signed POST (no database)", raw))
            memory = None
            for name, database_url in backends.items():
                settings = settings_for(home, database_url, sandbox_url)
                migrate.upgrade(settings)
                rate = asyncio.run(worker_rate(settings, url, args.events, args.concurrency))
                rows.append((f"worker: claim + sign + send + record ({name})", rate))
                if memory is None:
                    memory = asyncio.run(backlog_memory(settings, args.backlog))
        finally:
            if scratch:
                drop_pg(args.pg, scratch[1])
        accepted = accepted_ids(sandbox_url)

    print(
        f"### Deliveries to a loopback receiver ({args.events} events, {args.concurrency} "
        f"concurrent, receiver in a {args.receiver})\n"
    )
    print("| path | deliveries/s |\n|---|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} |")
    print(f"\nDistinct webhook-ids accepted by the receiver: {accepted:,}\n")
    assert memory is not None
    queued, held, peak = memory
    print(f"### Memory held by {args.backlog:,} queued deliveries (tracemalloc, SQLite)\n")
    print("| state | KiB |\n|---|---:|")
    print(f"| after enqueueing (rows live in the database) | {queued:,.0f} |")
    print(f"| all claimed by one worker (in memory) | {held:,.0f} |")
    print(f"| peak while enqueueing and claiming | {peak:,.0f} |")


if __name__ == "__main__":
    main()
