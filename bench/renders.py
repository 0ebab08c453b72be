"""Benchmark: noticing render completion by polling vs by webhooks, side by side in one run.

    .venv/bin/python bench/renders.py [--renders 50] [--job-seconds 2]
        [--output bench/results/renders.md]

Everything runs on one asyncio loop in one process (a second thread would add GIL hand-offs
to every request), over real loopback sockets:

* the sandbox (``arkyra.sandbox.app``) served by uvicorn on 127.0.0.1, HeyGen emulated with a
  fixed job time (``job_seconds``, default 2 s);
* a webhook receiver, also on 127.0.0.1, doing what ``POST /hooks/{source}`` will do: verify
  with :func:`~arkyra.providers.video.callbacks.handle_render_callback`, then hand the update
  to :class:`~arkyra.providers.video.completion.WatcherRegistry`;
* the real HeyGen provider and :class:`~arkyra.providers.video.completion.JobWatcher`.

For each mode, N renders start at once and each is watched to its end:

* **polling** with the project's defaults (``job_poll_initial_seconds`` 2 s, x1.5 backoff to
  ``job_poll_max_seconds`` 30 s), and with a tight 0.25 s interval for comparison;
* **webhooks**: an endpoint is registered once; the watcher's poll is only a safety net
  (first poll after 30 s), so a delivered callback needs no status request at all.

"Delay" is the time from the job's end (the emulator's clock: created + job_seconds, the same
``time.monotonic`` as ours) to the watcher settling. "Status requests" are the
``GET /v1/video_status.get`` calls the sandbox counted for that mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from arkyra.config import Settings  # noqa: E402
from arkyra.providers import get_provider  # noqa: E402
from arkyra.providers.video.callbacks import (  # noqa: E402
    CallbackIgnored,
    CallbackRejected,
    handle_render_callback,
)
from arkyra.providers.video.completion import JobWatcher, WatcherRegistry  # noqa: E402
from arkyra.providers.video.heygen import HeyGen  # noqa: E402
from arkyra.sandbox.app import create_app  # noqa: E402
from arkyra.sandbox.state import SandboxState  # noqa: E402
from arkyra.sandbox.vendors import heygen as emulator  # noqa: E402

STATUS_ROUTE = "heygen GET /heygen/v1/video_status.get"
SAFETY_NET_SECONDS = 30.0


@dataclass
class ModeResult:
    name: str
    renders: int
    status_requests: int
    callbacks: int
    delays_ms: list[float]
    wall_seconds: float
    completed_by: dict[str, int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve(app: Starlette, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve ``app`` on 127.0.0.1:``port`` on this loop; return once it accepts connections."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


def receiver(registry: WatcherRegistry, secrets: dict[str, str], counter: list[int]) -> Starlette:
    """What ``POST /hooks/{source}`` will do: verify, read, hand over; 401 when not authentic."""

    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            job = handle_render_callback(
                request.path_params["source"], request.headers, body, secrets=secrets
            )
        except CallbackRejected:
            return Response(status_code=401)
        except CallbackIgnored:
            return Response(status_code=202)
        counter[0] += 1
        registry.deliver(job)
        return Response(status_code=200)

    return Starlette(routes=[Route("/hooks/{source}", hook, methods=["POST"])])


async def run_mode(
    name: str,
    heygen: HeyGen,
    credentials: dict[str, str],
    state: SandboxState,
    renders: int,
    make_watcher: Callable[[str], JobWatcher],
    wait: Callable[[JobWatcher], Awaitable[object]],
    callbacks: list[int],
) -> ModeResult:
    """Start ``renders`` renders at once and watch each to its end."""
    before_status = state.calls[STATUS_ROUTE]
    before_callbacks = callbacks[0]
    request = {
        "script": "Benchmark render.",
        "avatar_id": emulator.AVATARS[0]["avatar_id"],
        "voice_id": emulator.VOICES[0]["voice_id"],
    }
    started = time.monotonic()

    async def one() -> tuple[float, str]:
        job = await heygen.send_data(credentials, request)
        watcher = make_watcher(job.id)
        await wait(watcher)
        sandbox_job = state.job("heygen", job.id)
        assert sandbox_job is not None
        assert watcher.noticed_at is not None
        done_at = sandbox_job.created + sandbox_job.seconds
        return (watcher.noticed_at - done_at) * 1000, watcher.completed_by or "?"

    outcomes = await asyncio.gather(*(one() for _ in range(renders)))
    wall = time.monotonic() - started
    by: dict[str, int] = {}
    for _, source in outcomes:
        by[source] = by.get(source, 0) + 1
    return ModeResult(
        name=name,
        renders=renders,
        status_requests=state.calls[STATUS_ROUTE] - before_status,
        callbacks=callbacks[0] - before_callbacks,
        delays_ms=[delay for delay, _ in outcomes],
        wall_seconds=wall,
        completed_by=by,
    )


async def benchmark(
    renders: int, job_seconds: float, home: Path, rounds: int = 1
) -> tuple[list[ModeResult], Settings]:
    state = SandboxState(seed=7)
    state.faults_for("heygen").job_seconds = job_seconds
    sandbox_port, hooks_port = free_port(), free_port()
    registry = WatcherRegistry()
    secrets: dict[str, str] = {}
    callbacks = [0]
    sandbox, sandbox_task = await serve(create_app(state), sandbox_port)
    hooks, hooks_task = await serve(receiver(registry, secrets, callbacks), hooks_port)
    settings = Settings(
        home=home,
        sandbox=True,
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        fingerprint_key="bench-fingerprint-key-000000000000",
    )  # type: ignore[call-arg]
    try:
        results = await run_modes(
            settings, state, registry, secrets, callbacks, renders, hooks_port, rounds
        )
    finally:
        for server in (hooks, sandbox):
            server.should_exit = True
        await asyncio.gather(hooks_task, sandbox_task)
    return results, settings


async def run_modes(
    settings: Settings,
    state: SandboxState,
    registry: WatcherRegistry,
    secrets: dict[str, str],
    callbacks: list[int],
    renders: int,
    hooks_port: int,
    rounds: int,
) -> list[ModeResult]:
    """``rounds`` rounds of the three modes, one mode after the other, through one client."""
    limits = httpx.Limits(max_connections=2 * renders, max_keepalive_connections=2 * renders)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        heygen = get_provider("heygen", settings=settings, client=client)
        assert isinstance(heygen, HeyGen)
        polling_key = {"api_key": "hg_bench_polling_key_0001"}
        webhook_key = {"api_key": "hg_bench_webhook_key_0001"}

        def polling(initial: float, maximum: float) -> Callable[[str], JobWatcher]:
            def make(job_id: str) -> JobWatcher:
                return JobWatcher(
                    "heygen",
                    job_id,
                    lambda: heygen.get_job(polling_key, job_id),
                    initial_delay=initial,
                    max_delay=maximum,
                    deadline_seconds=settings.job_deadline_seconds,
                )

            return make

        def with_webhooks(job_id: str) -> JobWatcher:
            return JobWatcher(
                "heygen",
                job_id,
                lambda: heygen.get_job(webhook_key, job_id),
                initial_delay=settings.job_poll_initial_seconds,
                max_delay=settings.job_poll_max_seconds,
                deadline_seconds=settings.job_deadline_seconds,
                first_poll_delay=SAFETY_NET_SECONDS,
            )

        endpoint = await heygen.register_webhook(
            webhook_key, {"url": f"http://127.0.0.1:{hooks_port}/hooks/heygen"}
        )
        secrets["heygen"] = endpoint.secret
        initial, maximum = settings.job_poll_initial_seconds, settings.job_poll_max_seconds
        results: list[ModeResult] = []
        for _round in range(rounds):
            results += [
            await run_mode(
                f"polling, defaults ({initial:g} s, x1.5, max {maximum:g} s)",
                heygen, polling_key, state, renders, polling(initial, maximum),
                lambda w: w.wait(), callbacks,
            ),
            await run_mode(
                "polling, tight (every 0.25 s)",
                heygen, polling_key, state, renders, polling(0.25, 0.25),
                lambda w: w.wait(), callbacks,
            ),
            await run_mode(
                f"webhooks (poll only as a safety net after {SAFETY_NET_SECONDS:g} s)",
                heygen, webhook_key, state, renders, with_webhooks,
                registry.wait, callbacks,
            ),
            ]  # fmt: skip
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def merge(name: str, rounds: list[ModeResult]) -> ModeResult:
    """One mode's rounds pooled: requests and callbacks summed, delays concatenated."""
    by: dict[str, int] = {}
    for r in rounds:
        for source, count in r.completed_by.items():
            by[source] = by.get(source, 0) + count
    return ModeResult(
        name=name,
        renders=sum(r.renders for r in rounds),
        status_requests=sum(r.status_requests for r in rounds),
        callbacks=sum(r.callbacks for r in rounds),
        delays_ms=[d for r in rounds for d in r.delays_ms],
        wall_seconds=statistics.mean(r.wall_seconds for r in rounds),
        completed_by=by,
    )


def report(
    results: list[ModeResult], renders: int, job_seconds: float, rounds: int, command: str
) -> str:
    names = list(dict.fromkeys(r.name for r in results))
    per_mode = {name: [r for r in results if r.name == name] for name in names}
    lines = [
        "# Render completion: polling vs webhooks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end; {renders} concurrent HeyGen renders per mode "
        f"against the sandbox on loopback, job time {job_seconds:g} s; {rounds} round(s) of "
        "the three modes, figures pooled over the rounds.",
        "",
        "```",
        command,
        "```",
        "",
        "| mode | renders | status requests | per render | callbacks | delay p50 (ms) "
        "| p95 (ms) | max (ms) | p50 per round (ms) | completed by | wall per round (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for name, rounds_of_mode in per_mode.items():
        r = merge(name, rounds_of_mode)
        by = ", ".join(f"{k} {v}" for k, v in sorted(r.completed_by.items()))
        p50s = " / ".join(f"{statistics.median(x.delays_ms):.0f}" for x in rounds_of_mode)
        lines.append(
            f"| {r.name} | {r.renders} | {r.status_requests} "
            f"| {r.status_requests / r.renders:.2f} | {r.callbacks} "
            f"| {statistics.median(r.delays_ms):.1f} | {percentile(r.delays_ms, 0.95):.1f} "
            f"| {max(r.delays_ms):.1f} | {p50s} | {by} | {r.wall_seconds:.2f} |"
        )
    lines += [
        "",
        "Delay = the watcher settling minus the job's end on the emulator's clock (same process,",
        "same monotonic clock). Status requests = `GET /v1/video_status.get` counted by the",
        "sandbox for that mode (each watcher polls once at once, then backs off). Callbacks =",
        "verified `avatar_video.*` events the receiver handed to the watchers.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/renders.md")
    args = parser.parse_args()
    command = ".venv/bin/python bench/renders.py " + shlex.join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as home:
        results, _ = asyncio.run(benchmark(args.renders, args.job_seconds, Path(home), args.rounds))
    text = report(results, args.renders, args.job_seconds, args.rounds, command.strip())
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
