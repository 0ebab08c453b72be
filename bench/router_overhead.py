"""Router overhead: the loopback upstream alone vs. `arkyra api` in front of it (quotas + usage on).

    .venv/bin/python bench/router_overhead.py [--runs 3] [--n 1000] [--n1 300] [--c 20]

Starts /work/shared/bench/fake_openai.py (or $BENCH_DIR) on 127.0.0.1:8721 and the API on
127.0.0.1:8723 (ports chosen not to collide with router-vs-litellm.sh), migrates a fresh SQLite
database, gives the org a budget (so every request reserves and settles), then runs the shared
load generator against both. Prints one JSON line per measurement and a summary: overhead at
c=1 is router p50 minus upstream p50, throughput at c=20 as a ratio of the upstream's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/work/shared/bench"))
PY = sys.executable
UPSTREAM = "http://127.0.0.1:8721"
ROUTER = "http://127.0.0.1:8723"


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"no answer from {url}")


def load(url: str, n: int, c: int, token: str | None = None) -> dict:
    args = [PY, str(BENCH_DIR / "load.py"), url, str(n), str(c)] + ([token] if token else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n1", type=int, default=300)
    parser.add_argument("--c", type=int, default=20)
    parser.add_argument("--no-quota", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="arkyra-overhead-"))
    env = {
        **os.environ,
        "ARKYRA_HOME": str(home),
        "ARKYRA_DATABASE_URL": f"sqlite:///{home / 'bench.db'}",
        "ARKYRA_OPENAI_BASE_URL": f"{UPSTREAM}/v1",
        "ARKYRA_OPENAI_API_KEY": "sk-loopback",
        "ARKYRA_JWT_SECRET": "bench-secret-bench-secret-bench-secret",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    arkyra = [PY, "-c", "from arkyra.cli import main; main()"]
    subprocess.run([*arkyra, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*arkyra, "token", "--org", "bench", "--role", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip

    procs = [
        subprocess.Popen(
            [
                PY,
                "-m",
                "uvicorn",
                "fake_openai:app",
                "--host",
                "127.0.0.1",
                "--port",
                "8721",
                "--log-level",
                "warning",
            ],
            cwd=BENCH_DIR,
            env=env,
        ),
        subprocess.Popen(
            [*arkyra, "api", "--host", "127.0.0.1", "--port", "8723"],
            env=env,
            stdout=(home / "api.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        wait_up(f"{UPSTREAM}/v1/models")
        wait_up(f"{ROUTER}/healthz")
        auth = {"Authorization": f"Bearer {token}"}
        if not args.no_quota:
            r = httpx.put(f"{ROUTER}/ai/quota/bench", json={"limit_usd": "1000000"}, headers=auth)
            r.raise_for_status()
        chat = "/v1/chat/completions"
        rows = []
        for run in range(args.runs):
            print(f"# run {run + 1}", flush=True)
            up1 = load(UPSTREAM + chat, args.n1, 1)
            ar1 = load(ROUTER + chat, args.n1, 1, token)
            upc = load(UPSTREAM + chat, args.n, args.c)
            arc = load(ROUTER + chat, args.n, args.c, token)
            rows.append(
                {
                    "overhead_p50_ms": round(ar1["p50_ms"] - up1["p50_ms"], 2),
                    "router_rps_c": arc["rps"],
                    "upstream_rps_c": upc["rps"],
                    "errors": ar1["errors"] + arc["errors"],
                }
            )
        quota = httpx.get(f"{ROUTER}/ai/quota/bench", headers=auth).json()
        usage = httpx.get(f"{ROUTER}/ai/usage/bench", headers=auth).json()
        summary = {
            "runs": rows,
            "median_overhead_p50_ms": statistics.median(r["overhead_p50_ms"] for r in rows),
            "median_router_rps": statistics.median(r["router_rps_c"] for r in rows),
            "median_upstream_rps": statistics.median(r["upstream_rps_c"] for r in rows),
            "quota_spent_usd": quota.get("usd", {}).get("spent"),
            "usage_attempts": sum(p["attempts"] for p in usage.get("by_provider", [])),
        }
        print(json.dumps(summary, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
