"""Vault and credential-lookup latency, side by side in one run.

    .venv/bin/python bench/credentials.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

- encrypt+decrypt of one credential document: the vault (AES-256-GCM with bound context) next to
  plain Fernet (the usual baseline), same process, same payload;
- credential lookup (``CredentialStore.credentials_for_use``: one indexed SELECT + decrypt) on
  SQLite and, when --pg is given, PostgreSQL, over 1,000 stored integrations.

Prints a Markdown table (p50 / p99 in microseconds) ready for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arkyra.config import Settings, generate_encryption_key
from arkyra.credentials.store import CredentialStore
from arkyra.db import migrate
from arkyra.db.session import Database, sync_url
from arkyra.providers import AccountInfo
from arkyra.security.vault import Vault, parse_keys

PAYLOAD = json.dumps({"api_key": "hg_" + "x" * 40, "label": "Marketing HeyGen"}).encode()


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def row(name: str, samples: list[float]) -> str:
    us = [s * 1e6 for s in samples]
    p50, p99, mean = pct(us, 50), pct(us, 99), statistics.mean(us)
    return f"| {name} | {len(us)} | {p50:.1f} | {p99:.1f} | {mean:.1f} |"


def bench_crypto(n: int) -> list[str]:
    vault = Vault(parse_keys("k1:" + generate_encryption_key()))
    fernet = Fernet(Fernet.generate_key())
    context = b"arkyra:third_party:" + uuid.uuid4().hex.encode()
    ours, baseline = [], []
    for _ in range(n):
        t = time.perf_counter()
        vault.decrypt(vault.encrypt(PAYLOAD, context=context), context=context)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        fernet.decrypt(fernet.encrypt(PAYLOAD))
        baseline.append(time.perf_counter() - t)
    return [
        row("vault encrypt+decrypt (AES-256-GCM)", ours),
        row("Fernet encrypt+decrypt (baseline)", baseline),
    ]


class NoBlocks:
    """Lookups never touch Prefect blocks; seeding skips them to keep the benchmark focused."""

    async def save(self, name, block):  # type: ignore[no-untyped-def]
        return str(uuid.uuid4())

    async def delete(self, name, identifier):  # type: ignore[no-untyped-def]
        return True

    async def list_blocks(self):  # type: ignore[no-untyped-def]
        return []


async def bench_lookup(label: str, url: str, home: Path, integrations: int, lookups: int) -> str:
    settings = Settings(
        home=home,
        database_url=url,
        encryption_keys="k1:" + generate_encryption_key(),
        fingerprint_key="bench-fingerprint-key-000000000",
    )
    migrate.upgrade(settings)
    db = Database(url)
    store = CredentialStore(db, Vault.from_settings(settings), NoBlocks(), settings=settings)
    ids: list[tuple[str, str]] = []
    for i in range(integrations):
        org = f"org-{i % 10}"
        integration = await store._store(  # seeding: the vendor check is not what we measure
            org, "heygen", {"api_key": f"hg_{i:06d}_" + "k" * 30}, AccountInfo(f"acct-{i}", f"A{i}")
        )
        ids.append((org, integration.id))
    rng = random.Random(7)
    for org, integration_id in ids[:50]:  # warm-up
        await store.credentials_for_use(org, integration_id)
    samples = []
    for _ in range(lookups):
        org, integration_id = rng.choice(ids)
        t = time.perf_counter()
        await store.credentials_for_use(org, integration_id)
        samples.append(time.perf_counter() - t)
    await db.dispose()
    return row(f"credential lookup, {label} ({integrations} rows)", samples)


def fresh_pg_database(base_url: str) -> tuple[str, callable]:  # type: ignore[valid-type]
    admin = create_engine(sync_url(base_url), isolation_level="AUTOCOMMIT")
    name = f"arkyra_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(base_url).set(database=name).render_as_string(hide_password=False), drop


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="PostgreSQL URL (a scratch database is created and dropped)")
    parser.add_argument("--crypto", type=int, default=20_000)
    parser.add_argument("--integrations", type=int, default=1_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    args = parser.parse_args()
    lines = ["| measurement | n | p50 µs | p99 µs | mean µs |", "|---|---|---|---|---|"]
    lines += bench_crypto(args.crypto)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        lines.append(
            await bench_lookup(
                "SQLite", f"sqlite:///{home / 'bench.db'}", home, args.integrations, args.lookups
            )
        )
        if args.pg:
            url, drop = fresh_pg_database(args.pg)
            try:
                lines.append(
                    await bench_lookup("PostgreSQL", url, home, args.integrations, args.lookups)
                )
            finally:
                drop()
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
