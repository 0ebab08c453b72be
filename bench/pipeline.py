"""Benchmark: ``content_pipeline`` on 100 items against its critical-path lower bound.

    .venv/bin/python bench/pipeline.py [--items 100] [--concurrency 20] [--slots process]
        [--poll-initial 0.1] [--poll-max 0.5] [--output bench/results/pipeline.md]

Every item goes Notion -> script (GLM) -> video (HeyGen render job) and voice (ElevenLabs) at
once -> one signed webhook delivery, through the real flow, tasks and providers, against the
sandbox on loopback and a temporary Prefect API (``prefect_test_harness``, SQLite). The
sandbox adds fixed latencies: pull 50 ms, LLM 300 ms, voice 200 ms, render job 2 s,
delivery 20 ms.

With ``C`` items in flight and every item the same length, the run cannot be shorter than

    bound = pull + ceil(N / C) * (llm + max(render, voice) + delivery)

(the providers' own concurrency limits never bind here: a render holds its HeyGen slot only
while submitting). The benchmark reports wall time against that bound, and the
orchestration cost per task run from two more runs with every latency at zero: one item at a
time (each task's full cost: Prefect task run, cache lookup and result write, provider call on
loopback) and ``C`` at a time (what that costs per task when tasks overlap).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
#: Worker logging as the benchmark runs it (before Prefect reads its settings): run logs stay
#: local. Shipping every INFO line to the API costs CPU on both ends (see the results file).
LOGGING = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_TO_API_ENABLED": "false"}
for _name, _value in LOGGING.items():
    os.environ.setdefault(_name, _value)

import prefect  # noqa: E402
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from arkyra.blocks.credentials import block_name_for, build_block  # noqa: E402
from arkyra.config import Settings  # noqa: E402
from arkyra.db.migrate import upgrade  # noqa: E402
from arkyra.db.models import Organization  # noqa: E402
from arkyra.db.session import Database  # noqa: E402
from arkyra.flows.content import content_pipeline  # noqa: E402
from arkyra.pipelines.models import (  # noqa: E402
    ContentSource,
    Integration,
    RunOptions,
    ScriptSettings,
    VideoSettings,
    VoiceSettings,
)
from arkyra.pipelines.runtime import PipelineRuntime, use_runtime  # noqa: E402
from arkyra.sandbox.server import running_sandbox  # noqa: E402
from arkyra.sandbox.state import SandboxState  # noqa: E402
from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID  # noqa: E402

LATENCIES = {"pull": 0.05, "llm": 0.3, "voice": 0.2, "render": 2.0, "delivery": 0.02}
ZERO = dict.fromkeys(LATENCIES, 0.0)
HEYGEN = {
    "avatar_id": "Abigail_expressive_2024112501",
    "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54",
}
ELEVENLABS = {"voice_id": "sbxVoice001abcdefgh"}
SECRET = "whsec_YmVuY2htYXJrLWJlbmNobWFyay1iZW5jaG1hcms="
TASKS_PER_ITEM = 4  # script, video, voice, delivery (plus one pull per run)


@dataclass
class Run:
    label: str
    items: int
    concurrency: int
    latencies: dict[str, float]
    wall_seconds: float
    succeeded: int
    paid_calls: dict[str, int]

    @property
    def tasks(self) -> int:
        return self.items * TASKS_PER_ITEM + 1

    @property
    def bound_seconds(self) -> float:
        lat = self.latencies
        per_item = lat["llm"] + max(lat["render"], lat["voice"]) + lat["delivery"]
        return lat["pull"] + math.ceil(self.items / self.concurrency) * per_item


def settings_for(home: Path, sandbox_url: str, poll: tuple[float, float]) -> Settings:
    return Settings(
        home=home,
        encryption_keys="b1:" + "A" * 42 + "Q",
        fingerprint_key="fingerprint-key-for-benchmarks-00000",
        jwt_secret="jwt-secret-for-benchmarks-only-000000000000",
        sandbox=True,
        sandbox_url=sandbox_url,
        ssrf_allow_loopback=True,
        glm_api_key="sk-platform-glm",
        job_poll_initial_seconds=poll[0],
        job_poll_max_seconds=poll[1],
        job_deadline_seconds=60.0,
    )  # type: ignore[call-arg]


async def with_history_database(settings: Settings, org: str) -> None:
    """A migrated database holding the organization, so every render, speech and delivery is
    written to the integrations' history as in a real deployment (arkyra.pipelines.activity_log)."""
    await asyncio.to_thread(upgrade, settings)
    db = Database.from_settings(settings)
    try:
        async with db.transaction() as session:
            session.add(Organization(id=org, name=org))
    finally:
        await db.dispose()


async def connect(org: str, identifier: str, credentials: dict[str, str]) -> Integration:
    integration_id = uuid.uuid4().hex[:16]
    block = build_block(
        identifier, organization_id=org, integration_id=integration_id, credentials=credentials
    )
    await block.asave(block_name_for(integration_id), overwrite=True)
    return Integration(identifier=identifier, integration_id=integration_id)


async def run_once(
    label: str,
    items: int,
    concurrency: int,
    latencies: dict[str, float],
    slots: str,
    poll: tuple[float, float],
    home: Path,
) -> Run:
    state = SandboxState(seed=11)
    state.store("notion")["seed_rows"] = items
    state.faults_for("notion").latency_ms = latencies["pull"] * 1000
    state.faults_for("glm").latency_ms = latencies["llm"] * 1000
    state.faults_for("elevenlabs").latency_ms = latencies["voice"] * 1000
    state.faults_for("heygen").job_seconds = latencies["render"]
    state.faults_for("receiver").latency_ms = latencies["delivery"] * 1000
    with running_sandbox(state=state) as sandbox:
        settings = settings_for(home, sandbox.url, poll)
        runtime = PipelineRuntime(settings=settings, slot_scope=slots)  # type: ignore[arg-type]
        org = f"bench-{uuid.uuid4().hex[:8]}"  # cache keys include it: every run pays
        await with_history_database(settings, org)
        with use_runtime(runtime):
            notion = await connect(org, "notion", {"api_key": "secret_bench"})
            heygen = await connect(org, "heygen", {"api_key": "hg_bench"})
            eleven = await connect(org, "elevenlabs", {"api_key": "el_bench"})
            hook = await connect(org, "webhooks", {"url": f"{sandbox.url}/receiver/bench",
                                                   "secret": SECRET})  # fmt: skip
            heygen.options, eleven.options = HEYGEN, ELEVENLABS
            limits = {"heygen": 3, "elevenlabs": 4, "glm": 8, "webhooks": 8}
            started = time.perf_counter()
            summary = await content_pipeline(
                organization_id=org,
                source=ContentSource(
                    integration=notion,
                    query={"id": CONTENT_DATA_SOURCE_ID, "include_body": False},
                    max_items=items,
                ),
                script=ScriptSettings(providers=[Integration(identifier="glm")]),
                video=VideoSettings(providers=[heygen], test=True),
                voice=VoiceSettings(providers=[eleven]),
                destinations=[hook],
                options=RunOptions(max_concurrency=concurrency, provider_limits=limits),
            )
            wall = time.perf_counter() - started
    return Run(
        label, items, concurrency, latencies, wall, summary.succeeded, dict(state.paid_calls)
    )


def machine_facts() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- CPU: {model}, {os.cpu_count()} logical CPUs; memory {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, prefect {prefect.__version__}",
        "- Prefect API: `prefect_test_harness` (temporary server, SQLite), in this process's "
        "machine; sandbox: uvicorn on 127.0.0.1 in a thread of this process",
    ]


def report(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    sequential, overlapped, *timed = runs
    main = timed[0]
    ratio = main.wall_seconds / main.bound_seconds
    lines = [
        "# Pipeline benchmark: 100 items against the critical path",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:",
        "",
        f"    {command}",
        "",
        *machine_facts(),
        "",
        "## Wall time against the lower bound",
        "",
        f"Latencies: pull {LATENCIES['pull'] * 1000:.0f} ms, LLM {LATENCIES['llm'] * 1000:.0f} ms,"
        f" voice {LATENCIES['voice'] * 1000:.0f} ms, render job {LATENCIES['render']:.0f} s,"
        f" delivery {LATENCIES['delivery'] * 1000:.0f} ms. {main.items} items; in flight ="
        " `RunOptions.max_concurrency`; provider slots"
        f" `{args.slots}`; job polling {args.poll_initial} s rising to {args.poll_max} s;"
        f" worker logging {', '.join(f'{k}={os.environ[k]}' for k in LOGGING)}.",
        "",
        "| items | in flight | lower bound | wall | wall / bound | items ok | paid calls |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in timed:
        lines.append(
            f"| {run.items} | {run.concurrency} | {run.bound_seconds:.2f} s "
            f"| {run.wall_seconds:.2f} s | **{run.wall_seconds / run.bound_seconds:.2f}x** "
            f"| {run.succeeded} "
            f"| {', '.join(f'{k} {v}' for k, v in sorted(run.paid_calls.items()))} |"
        )
    lines += [
        "",
        f"Target for the chosen concurrency ({main.concurrency}): at most 1.3x."
        f" {'Met' if ratio <= 1.3 else 'Missed'} ({ratio:.2f}x).",
        "",
        "## Orchestration cost per task",
        "",
        "The same pipeline with every latency at zero (render jobs done at once), so the wall"
        " time is orchestration plus loopback HTTP. Tasks = 4 per item (script, video, voice,"
        " delivery) + 1 pull.",
        "",
        "| run | items | in flight | task runs | wall | per task |",
        "|---|---|---|---|---|---|",
    ]
    for run in (sequential, overlapped):
        lines.append(
            f"| {run.label} | {run.items} | {run.concurrency} | {run.tasks} "
            f"| {run.wall_seconds:.2f} s | {run.wall_seconds / run.tasks * 1000:.1f} ms |"
        )
    overhead = (main.wall_seconds - main.bound_seconds) / math.ceil(main.items / main.concurrency)
    lines += [
        "",
        f"In the timed run, wall minus bound is {main.wall_seconds - main.bound_seconds:.2f} s:"
        f" {overhead * 1000:.0f} ms per wave of {main.concurrency} items (each item's four"
        " tasks in a row, plus how late the last status poll sees a finished render).",
    ]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> list[Run]:
    home = Path(tempfile.mkdtemp(prefix="arkyra-bench-"))
    poll = (args.poll_initial, args.poll_max)
    chosen = args.concurrency[0]
    runs = [
        await run_once(
            "zero latency, one at a time", args.sequential_items, 1, ZERO, args.slots, poll, home
        ),
        await run_once(
            "zero latency, overlapped", args.items, chosen, ZERO, args.slots, poll, home
        ),
    ]
    for concurrency in args.concurrency:
        runs.append(
            await run_once("timed", args.items, concurrency, LATENCIES, args.slots, poll, home)
        )
    return runs


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[20],
        help="items in flight; the first is the chosen one, others are extra rows",
    )  # fmt: skip
    parser.add_argument("--sequential-items", type=int, default=20)
    parser.add_argument("--slots", choices=["process", "server"], default="process")
    parser.add_argument("--poll-initial", type=float, default=0.1)
    parser.add_argument("--poll-max", type=float, default=0.5)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    command = ".venv/bin/python bench/pipeline.py " + shlex.join(sys.argv[1:])
    results = Path(tempfile.mkdtemp(prefix="arkyra-bench-results-"))
    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}),
    ):
        finished = asyncio.run(main(arguments))
    text = report(finished, arguments, command.strip())
    print(text)
    if arguments.output:
        arguments.output.write_text(text)
