"""API request overhead: GET /third-party and a cached POST /third-party/function/{id}/voices.

    .venv/bin/python bench/api.py [--runs 3] [--n 2000] [--c 20]

Everything on loopback, each in its own process: the sandbox (``arkyra sandbox``), the real app
(``create_app`` under uvicorn, SQLite in a fresh temporary home, an ephemeral Prefect for the
credential blocks) and a closed-loop load generator (``bench/api.py load``, httpx, C clients).
The per-organization rate limits are raised to 10^7/minute for the run (the defaults, 120 and
60 per minute, would otherwise answer 429 almost at once). HeyGen and ElevenLabs are connected
through the API with sandbox keys; one ``voices`` call per integration fills the list cache
before measuring, so the measured calls are cache hits (checked: ``x-arkyra-cache: hit``).
Prints one JSON line per measurement and a JSON summary (medians over the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HIGH_LIMITS = {bucket: "10000000/minute" for bucket in ("default", "connect", "function", "submit")}
SANDBOX_KEYS = {"heygen": "hg_bench_key_0123456789abcdef", "elevenlabs": "el_bench_key_0123456789"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"no answer from {url}")


# -- the server process -------------------------------------------------------------------------


def serve(port: int) -> None:
    """The real app with raised limits, logging as ``arkyra api`` configures it."""
    import uvicorn

    from arkyra.api.app import create_app
    from arkyra.api.logging import configure_logging
    from arkyra.config import get_settings

    configure_logging()
    app = create_app(get_settings(), limits=HIGH_LIMITS)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, server_header=False)


# -- the load generator process -----------------------------------------------------------------


async def load(url: str, method: str, n: int, c: int, token: str, body: str | None) -> dict:
    """C closed-loop clients share N requests; latency per request, RPS over the wall time."""
    headers = {"Authorization": f"Bearer {token}"}
    content = body.encode() if body is not None else None
    if content is not None:
        headers["content-type"] = "application/json"
    latencies: list[float] = []
    errors = 0
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(50):  # warm-up: connections, caches
            await client.request(method, url, headers=headers, content=content)
        remaining = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for _ in remaining:
                started = time.perf_counter()
                response = await client.request(method, url, headers=headers, content=content)
                latencies.append((time.perf_counter() - started) * 1000)
                cache = response.headers.get("x-arkyra-cache", "-")
                statuses[f"{response.status_code}/{cache}"] = (
                    statuses.get(f"{response.status_code}/{cache}", 0) + 1
                )
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 2)

    return {
        "url": url,
        "method": method,
        "n": n,
        "c": c,
        "errors": errors,
        "statuses": statuses,
        "rps": round(n / wall, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def run_load(url: str, method: str, n: int, c: int, token: str, body: str | None = None) -> dict:
    args = [PY, __file__, "load", url, method, str(n), str(c), token] + ([body] if body else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


# -- the driver ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import fastapi
    import uvicorn

    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "httpx": httpx.__version__,
    }


def connect(api: str, headers: dict[str, str], identifier: str) -> str:
    response = httpx.post(
        f"{api}/third-party/{identifier}",
        json={"fields": {"api_key": SANDBOX_KEYS[identifier]}},
        headers=headers,
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--c", type=int, default=20)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="arkyra-api-bench-"))
    sandbox_port, api_port = free_port(), free_port()
    sandbox, api = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "ARKYRA_HOME": str(home),
        "ARKYRA_DATABASE_URL": f"sqlite:///{home / 'bench.db'}",
        "ARKYRA_JWT_SECRET": "bench-secret-bench-secret-bench-secret",
        "ARKYRA_SANDBOX": "true",
        "ARKYRA_SANDBOX_URL": sandbox,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    arkyra = [PY, "-c", "from arkyra.cli import main; main()"]
    subprocess.run([*arkyra, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*arkyra, "token", "--org", "bench", "--role", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    log = (home / "servers.log").open("w")
    procs = [
        subprocess.Popen(
            [*arkyra, "sandbox", "--port", str(sandbox_port)], env=env, stdout=log, stderr=log
        ),
        subprocess.Popen(
            [PY, __file__, "serve", str(api_port)], env=env, cwd=ROOT, stdout=log, stderr=log
        ),
    ]
    try:
        wait_up(f"{sandbox}/")
        wait_up(f"{api}/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        ids = {identifier: connect(api, headers, identifier) for identifier in SANDBOX_KEYS}
        for integration_id in ids.values():  # fill the list cache
            response = httpx.post(
                f"{api}/third-party/function/{integration_id}/voices", headers=headers, timeout=60
            )
            response.raise_for_status()
        targets = {
            "GET /third-party": (f"{api}/third-party", "GET", None),
            **{
                f"POST voices ({identifier}, cached)": (
                    f"{api}/third-party/function/{integration_id}/voices",
                    "POST",
                    "{}",
                )
                for identifier, integration_id in ids.items()
            },
        }
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for run in range(args.runs):
            print(f"# run {run + 1}", flush=True)
            for name, (url, method, body) in targets.items():
                results[name].append(run_load(url, method, args.n, args.c, token, body))
        summary = {
            "machine": machine(),
            "n": args.n,
            "c": args.c,
            "runs": args.runs,
            "limits": HIGH_LIMITS,
            "results": {
                name: {
                    "median_rps": statistics.median(r["rps"] for r in rows),
                    "median_p50_ms": statistics.median(r["p50_ms"] for r in rows),
                    "median_p99_ms": statistics.median(r["p99_ms"] for r in rows),
                    "errors": sum(r["errors"] for r in rows),
                    "statuses": rows[-1]["statuses"],
                }
                for name, rows in results.items()
            },
        }
        print(json.dumps(summary, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        log.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        url, method, n, c, token, *rest = sys.argv[2:]
        body = rest[0] if rest else None
        print(json.dumps(asyncio.run(load(url, method, int(n), int(c), token, body))))
    else:
        main()
