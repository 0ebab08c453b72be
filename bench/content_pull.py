"""Benchmark: time and peak memory to pull N rows (default 100,000) into a pandas DataFrame from
the sandboxed Google Sheets, GA4 and Airtable, each through the real provider code.

Usage::

    .venv/bin/python bench/content_pull.py [--rows 100000] [--sources google-sheets,ga4,airtable]
        [--airtable-real-rate] [--output bench/results/content_pull.md]

Layout, so that one measurement never sees another's memory:

* one **server process** seeds the sandbox (a registered service account, a spreadsheet, a GA4
  property, an Airtable table, each with N rows) and serves it on a real loopback port with
  :func:`arkyra.sandbox.server.running_sandbox`. The emulators build their responses there, so
  their memory is not counted against the clients;
* one **client process per source and per pass**: a *timed* pass (no tracing; wall time and the
  process's peak-RSS delta from ``/proc/self/status``) and a *traced* pass (``tracemalloc`` peak
  of everything the pull allocates, which includes the returned DataFrame). Both are compared
  with ``DataFrame.memory_usage(deep=True).sum()``; the target is a traced peak under 5x.

Airtable allows 5 requests per second per base. By default the benchmark turns the limit off on
both sides (the emulator's ``enforce_rate_limit`` store knob and the client's per-base limiter,
replaced on the provider instance), so the figure is the client's own cost; the real-world time
is reported separately as requests / 5 rps. ``--airtable-real-rate`` keeps both limits on.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOURCES = ("google-sheets", "ga4", "airtable")
TARGET_RATIO = 5.0
AIRTABLE_RPS = 5
GA4_DAYS = 1000  # the GA4 report is date x pagePath: GA4_DAYS days times rows / GA4_DAYS pages
GA4_METRICS = ["activeUsers", "sessions", "screenPageViews", "engagementRate"]
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "content_pull.md"
MIB = 1024 * 1024
NOTES_MARKER = "<!-- notes below are written by hand and kept when the benchmark reruns -->"


# -- the server process ------------------------------------------------------------------------


def serve(rows: int, airtable_real_rate: bool) -> None:
    """Seed every source with ``rows`` rows, serve the sandbox, print its config, wait for EOF."""
    from arkyra.sandbox.server import running_sandbox
    from arkyra.sandbox.state import SandboxState
    from arkyra.sandbox.vendors import airtable, ga4, google_oauth, google_sheets

    state = SandboxState(seed=7)
    key_json = google_oauth.create_service_account(state, project_id="arkyra-bench")
    email = key_json["client_email"]
    spreadsheet_id = google_sheets.seed_spreadsheet(
        state, title="Bench", shared_with=[email], generate_rows=rows
    )
    days = min(GA4_DAYS, rows)
    if rows % days:
        raise SystemExit(f"--rows must be a multiple of {days} for the GA4 report shape")
    property_id = ga4.seed_property(
        state,
        viewers=[email],
        pages=rows // days,
        daily_tokens=10**9,
        hourly_tokens=10**9,
    )
    store = state.store(airtable.IDENTIFIER)
    store["enforce_rate_limit"] = airtable_real_rate
    airtable.seed(store, rows)
    with running_sandbox(state=state) as sandbox:
        config = {
            "url": sandbox.url,
            "rows": rows,
            "service_account_json": json.dumps(key_json),
            "spreadsheet_id": spreadsheet_id,
            "property_id": property_id,
            "ga4_days": days,
            "airtable_base_id": airtable.CONTENT_BASE_ID,
            "airtable_table": "Posts",
            "airtable_real_rate": airtable_real_rate,
        }
        print(json.dumps(config), flush=True)
        sys.stdin.read()  # the parent closes our stdin when it is done


# -- the client process ------------------------------------------------------------------------


Pull = Callable[[Any, dict[str, Any]], Awaitable[Any]]


async def pull_sheets(provider: Any, config: dict[str, Any]) -> Any:
    """``GoogleSheetsProvider.values`` on the whole first sheet (chunked batchGets)."""
    from arkyra.providers.content.google_sheets import ValuesInput

    credentials = {
        "service_account_json": config["service_account_json"],
        "spreadsheet_id": config["spreadsheet_id"],
    }
    return await provider.values(credentials, ValuesInput(range="Sheet1"))


async def pull_ga4(provider: Any, config: dict[str, Any]) -> Any:
    """``Ga4Provider.run_report``: date x pagePath with four metrics, every page."""
    from arkyra.providers.content.ga4 import DateRange, RunReportInput

    credentials = {
        "service_account_json": config["service_account_json"],
        "property_id": config["property_id"],
    }
    params = RunReportInput(
        date_ranges=[DateRange(start_date=f"{config['ga4_days'] - 1}daysAgo", end_date="today")],
        dimensions=["date", "pagePath"],
        metrics=GA4_METRICS,
    )
    report = await provider.run_report(credentials, params)
    return report.frame


async def pull_airtable(provider: Any, config: dict[str, Any]) -> Any:
    """``AirtableProvider.dataframe`` on the Posts table (schema call, then every page)."""
    from arkyra.providers.content.airtable import ListRecordsInput, SlidingWindowLimiter

    if not config["airtable_real_rate"]:
        provider.rate_limiter = SlidingWindowLimiter(10**9, 1.0)  # off, for this instance only
    credentials = {"api_key": "patBenchmark.sandbox"}
    params = ListRecordsInput(base_id=config["airtable_base_id"], table=config["airtable_table"])
    return await provider.dataframe(credentials, params)


PULLS: dict[str, Pull] = {
    "google-sheets": pull_sheets,
    "ga4": pull_ga4,
    "airtable": pull_airtable,
}


def _proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``); 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _run_pull(source: str, config: dict[str, Any], trace: bool) -> dict[str, Any]:
    from arkyra.config import Settings
    from arkyra.http.client import build_client
    from arkyra.providers import get_provider

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(
            home=Path(home),
            sandbox=True,
            sandbox_url=config["url"],
            fingerprint_key="fingerprint-key-for-the-benchmark-0000",
            http_timeout_seconds=300.0,
        )
        requests = 0

        async def count(request: Any) -> None:
            nonlocal requests
            requests += 1

        async with build_client(settings) as client:
            client.event_hooks = {"request": [count], "response": []}
            provider = get_provider(source, settings=settings, client=client)
            gc.collect()
            rss_before = _proc_status_kib("VmRSS")
            peak_reset = _reset_peak_rss()
            if trace:
                tracemalloc.start()
            started, cpu_started = time.perf_counter(), time.process_time()
            frame = await PULLS[source](provider, config)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
            tracemalloc.stop()
            rss_peak = _proc_status_kib("VmHWM")
    return {
        "source": source,
        "traced": trace,
        "rows": len(frame),
        "columns": len(frame.columns),
        "requests": requests,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "traced_peak_bytes": traced_peak,
        "rss_delta_bytes": (rss_peak - rss_before) * 1024 if peak_reset else None,
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
        "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()},
    }


def pull(source: str, trace: bool) -> None:
    """Client process: read the config from stdin, pull once, print one JSON line of figures."""
    # Imported before measuring, so module loading is not counted as the pull's memory.
    import pandas  # noqa: F401

    import arkyra.providers.content.airtable
    import arkyra.providers.content.ga4
    import arkyra.providers.content.google_sheets  # noqa: F401

    config = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_run_pull(source, config, trace))), flush=True)


# -- the parent --------------------------------------------------------------------------------


@dataclass
class Figures:
    source: str
    rows: int
    columns: int
    requests: int
    seconds: float
    cpu_seconds: float
    traced_seconds: float
    traced_peak_mib: float
    rss_delta_mib: float | None
    frame_mib: float
    ratio: float
    real_world_seconds: float | None

    @property
    def meets_target(self) -> bool:
        return self.ratio < TARGET_RATIO


def _client(source: str, trace: bool, config: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--pull", source] + (["--trace"] if trace else [])
    done = subprocess.run(
        command, input=json.dumps(config), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{source} ({'traced' if trace else 'timed'}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(source: str, config: dict[str, Any]) -> Figures:
    timed = _client(source, False, config)
    traced = _client(source, True, config)
    for result in (timed, traced):
        if result["rows"] != config["rows"]:
            raise SystemExit(f"{source} returned {result['rows']:,} rows, not {config['rows']:,}")
    frame_mib = traced["frame_bytes"] / MIB
    real_world = None
    if source == "airtable" and not config["airtable_real_rate"]:
        real_world = math.ceil(timed["requests"] / AIRTABLE_RPS)
    rss = timed["rss_delta_bytes"]
    return Figures(
        source=source,
        rows=timed["rows"],
        columns=timed["columns"],
        requests=timed["requests"],
        seconds=timed["seconds"],
        cpu_seconds=timed["cpu_seconds"],
        traced_seconds=traced["seconds"],
        traced_peak_mib=traced["traced_peak_bytes"] / MIB,
        rss_delta_mib=None if rss is None else rss / MIB,
        frame_mib=frame_mib,
        ratio=traced["traced_peak_bytes"] / traced["frame_bytes"],
        real_world_seconds=real_world,
    )


def table(results: list[Figures]) -> str:
    head = (
        "| source | rows | cols | requests | time (s) | client CPU (s) | traced time (s) | "
        "tracemalloc peak (MiB) | RSS delta (MiB) | DataFrame (MiB) | peak / DataFrame | < 5x |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        rss = "n/a" if r.rss_delta_mib is None else f"{r.rss_delta_mib:.1f}"
        lines.append(
            f"| {r.source} | {r.rows:,} | {r.columns} | {r.requests:,} | {r.seconds:.2f} | "
            f"{r.cpu_seconds:.2f} | {r.traced_seconds:.2f} | {r.traced_peak_mib:.1f} | {rss} | "
            f"{r.frame_mib:.1f} | {r.ratio:.2f}x | {'yes' if r.meets_target else 'NO'} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    import pandas

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "platform": platform.platform(),
    }


def write_report(path: Path, command: str, results: list[Figures], config: dict[str, Any]) -> None:
    info = machine()
    airtable = next((r for r in results if r.source == "airtable"), None)
    lines = [
        "# Content pull benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: nproc {info['nproc']}, Python {info['python']}, pandas {info['pandas']}, "
        f"{info['platform']}.",
        "",
        table(results),
        "",
        "- *time*: wall time of the pull in a process without tracing; *traced time* is the "
        "same pull under `tracemalloc` (slower, shown only for reference). *client CPU* is "
        "the client process's CPU time during the untraced pull: the part of the wall time "
        "spent in the provider code (the rest is waiting on the emulator).",
        "- *tracemalloc peak*: the highest traced allocation during the pull (returned "
        "DataFrame included); *peak / DataFrame* divides it by "
        "`df.memory_usage(deep=True).sum()`. Target: under 5x.",
        "- *RSS delta*: peak RSS (`VmHWM`, reset before the pull) minus RSS before the pull, "
        "in the untraced process; it includes allocator slack and freed-but-kept arenas.",
        "- The sandbox runs in its own process on a loopback port "
        f"(`running_sandbox`, `{config['url']}`), so the emulators' memory is not counted.",
    ]
    if airtable is not None:
        if airtable.real_world_seconds is not None:
            lines.append(
                "- Airtable: the 5 requests/second/base limit was turned off for this run in "
                "the emulator (`enforce_rate_limit` store knob) and in the client (the "
                "provider instance got an unlimited `SlidingWindowLimiter`). At the real "
                f"limit the {airtable.requests:,} requests (schema + pages of 100) take at "
                f"least {airtable.requests:,} / {AIRTABLE_RPS} rps = "
                f"{airtable.real_world_seconds:,} s."
            )
        else:
            lines.append("- Airtable: run with the real 5 rps/base limit on both sides.")
    lines += ["", NOTES_MARKER, _kept_notes(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def _kept_notes(path: Path) -> str:
    """The hand-written part of an earlier report (after the marker), if any."""
    if not path.exists():
        return ""
    _, found, notes = path.read_text().partition(NOTES_MARKER)
    return notes.strip("\n") if found else ""


def run(args: argparse.Namespace) -> None:
    command = [sys.executable, __file__, "--serve", str(args.rows)]
    if args.airtable_real_rate:
        command.append("--airtable-real-rate")
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise SystemExit("the sandbox server process did not start")
        config = json.loads(line)
        results = []
        for source in args.sources.split(","):
            if source not in PULLS:
                raise SystemExit(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
            print(f"pulling {args.rows:,} rows from {source} ...", file=sys.stderr, flush=True)
            results.append(measure(source, config))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    print(table(results))
    shown = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/content_pull.py"])
    write_report(args.output, f"{shown} {' '.join(args.argv)}".strip(), results, config)
    print(f"\nwritten: {args.output}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--airtable-real-rate", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--serve", type=int, metavar="ROWS", help=argparse.SUPPRESS)
    parser.add_argument("--pull", choices=SOURCES, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.serve is not None:
        serve(args.serve, args.airtable_real_rate)
    elif args.pull is not None:
        pull(args.pull, args.trace)
    else:
        run(args)


if __name__ == "__main__":
    main()
