"""``arkyra demo``: the content pipeline end to end against the local sandbox (no accounts).

Starts the sandbox on loopback, migrates the local SQLite database, connects Notion, GLM,
OpenAI, HeyGen, ElevenLabs and a signed webhook through the credential store (encrypted row +
Prefect block on an ephemeral Prefect server), then runs ``content_pipeline``: three Notion
pages become scripts (GLM is down, so the chain falls back to OpenAI), HeyGen videos and
ElevenLabs voice-overs, each delivered to a webhook receiver that checks the signatures. A
second run shows the cost safety: everything comes from the cache, zero paid calls.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from arkyra.config import Settings, apply_prefect_environment, get_settings

DEMO_ORG = "demo"
DEMO_ITEMS = 3
RECEIVER_PATH = "arkyra-demo"
DEMO_KEYS: dict[str, dict[str, str]] = {
    "notion": {"api_key": "secret_demo_sandbox", "label": "Demo Notion"},
    "glm": {"api_key": "glm-demo-sandbox-key", "label": "Demo GLM"},
    "openai": {"api_key": "sk-demo-sandbox-key", "label": "Demo OpenAI"},
    "heygen": {"api_key": "hg_demo_sandbox_key", "label": "Demo HeyGen"},
    "elevenlabs": {"api_key": "el_demo_sandbox_key", "label": "Demo ElevenLabs"},
}
HEYGEN_OPTIONS = {"avatar_id": "Abigail_expressive_2024112501",
                  "voice_id": "2d5b0e6cf36f460aa7fc47e3eee4ba54"}  # fmt: skip
ELEVENLABS_OPTIONS = {"voice_id": "sbxVoice001abcdefgh"}


def demo_settings(base: Settings, sandbox_url: str) -> Settings:
    """The user's settings, pointed at the running sandbox."""
    return base.model_copy(
        update={
            "sandbox": True,
            "sandbox_url": sandbox_url,
            "ssrf_allow_loopback": True,
            "job_poll_initial_seconds": 0.3,
            "job_poll_max_seconds": 0.6,
            "job_deadline_seconds": 60.0,
            "http_max_attempts": 2,
        }
    )


def run_demo(*, port: int = 0, console: Console | None = None) -> None:
    # Flow and task logs go to the Prefect API; the console shows the progress table instead.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    from arkyra.sandbox.server import running_sandbox
    from arkyra.sandbox.state import SandboxState

    console = console or Console()
    base = get_settings()
    apply_prefect_environment(base)
    state = SandboxState()
    state.store("notion")["seed_rows"] = DEMO_ITEMS
    state.faults_for("heygen").job_seconds = 3.0
    with running_sandbox(port=port, state=state) as sandbox:
        settings = demo_settings(base, sandbox.url)
        console.rule("[bold]ARKYRA Pipelines demo")
        console.print(f"sandbox      {sandbox.url}  (every vendor API, emulated on loopback)")
        asyncio.run(_demo(settings, sandbox, console))


@dataclass
class Connected:
    integrations: dict[str, Any]
    webhook_secret: str


async def _connect_all(settings: Settings, sandbox_url: str, console: Console) -> Connected:
    from arkyra.credentials import store_from_settings
    from arkyra.db import migrate
    from arkyra.pipelines.models import Integration

    keys_were_local = settings.encryption_keys is None
    await asyncio.to_thread(migrate.upgrade, settings)
    console.print(f"database     {settings.effective_database_url}  (migrated)")
    store = store_from_settings(settings)
    if keys_were_local:
        console.print(f"keys         local development keys in {settings.local_keys_path}")
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    wanted = {
        **DEMO_KEYS,
        "webhooks": {
            "url": f"{sandbox_url}/receiver/{RECEIVER_PATH}",
            "secret": webhook_secret,
            "label": "Demo webhook",
        },
    }
    integrations: dict[str, Integration] = {}
    try:
        with console.status("connecting integrations (checks each key, stores row + block)..."):
            for identifier, fields in wanted.items():
                found = await store.connect(DEMO_ORG, identifier, fields)
                integrations[identifier] = Integration(
                    identifier=identifier, integration_id=found.id
                )
    finally:
        await store.db.dispose()
    names = ", ".join(integrations)
    console.print(f"connected    {names}  (credentials in Prefect blocks tp-<id>)")
    integrations["heygen"].options = dict(HEYGEN_OPTIONS)
    integrations["elevenlabs"].options = dict(ELEVENLABS_OPTIONS)
    return Connected(integrations, webhook_secret)


def _parameters(connected: Connected, *, refresh: bool) -> dict[str, Any]:
    from arkyra.pipelines.models import (
        ContentSource,
        RunOptions,
        ScriptSettings,
        VideoSettings,
        VoiceSettings,
    )
    from arkyra.sandbox.vendors.notion import CONTENT_DATA_SOURCE_ID

    found = connected.integrations
    return {
        "organization_id": DEMO_ORG,
        "source": ContentSource(
            integration=found["notion"], query={"id": CONTENT_DATA_SOURCE_ID}, max_items=DEMO_ITEMS
        ),
        "script": ScriptSettings(providers=[found["glm"], found["openai"]], target_words=60),
        "video": VideoSettings(providers=[found["heygen"]], title_prefix="ARKYRA demo: "),
        "voice": VoiceSettings(providers=[found["elevenlabs"]]),
        "destinations": [found["webhooks"]],
        "options": RunOptions(max_concurrency=DEMO_ITEMS, refresh=refresh),
    }


def _progress_table(counts: dict[str, int], started: float, title: str) -> Table:
    table = Table("stage", "done", title=f"{title}  ({time.monotonic() - started:0.1f} s)")
    for stage, value in counts.items():
        bar = "█" * value + "░" * max(DEMO_ITEMS - value, 0)
        table.add_row(stage, f"{bar} {value}/{DEMO_ITEMS}")
    return table


def _stage_counts(calls: dict[str, int], paid: dict[str, int]) -> dict[str, int]:
    """Progress read from the sandbox's own counters: what the vendors have seen so far."""

    def requests(prefix: str) -> int:
        return sum(n for key, n in calls.items() if key.startswith(prefix))

    counts = {
        "glm attempts (down)": requests("glm POST"),
        "openai scripts": paid.get("openai", 0),
        "heygen videos": paid.get("heygen", 0),
        "elevenlabs voices": paid.get("elevenlabs", 0),
        "webhook deliveries": requests("receiver POST"),
    }
    return {stage: min(value, DEMO_ITEMS) for stage, value in counts.items()}


async def _run_with_progress(
    console: Console, state: Any, title: str, run: Callable[[], Any]
) -> Any:
    """Run the flow while a live table shows each stage's progress (sandbox counters)."""
    started = time.monotonic()
    before_calls, before_paid = dict(state.calls), dict(state.paid_calls)

    def table() -> Table:
        calls = {k: n - before_calls.get(k, 0) for k, n in dict(state.calls).items()}
        paid = {k: n - before_paid.get(k, 0) for k, n in dict(state.paid_calls).items()}
        return _progress_table(_stage_counts(calls, paid), started, title)

    with Live(table(), console=console, refresh_per_second=8) as live:
        job = asyncio.ensure_future(run())
        while not job.done():
            live.update(table())
            await asyncio.sleep(0.125)
        live.update(table())
    console.print()
    return job.result()


async def _demo(settings: Settings, sandbox: Any, console: Console) -> None:
    from arkyra.flows.content import content_pipeline
    from arkyra.pipelines.costs import format_usd
    from arkyra.pipelines.runtime import PipelineRuntime, use_runtime

    connected = await _connect_all(settings, sandbox.url, console)
    async with httpx.AsyncClient(base_url=sandbox.url) as control:
        await control.put(f"/receiver/_control/{RECEIVER_PATH}",
                          json={"secret": connected.webhook_secret})  # fmt: skip
        sandbox.state.faults_for("glm").update({"error_rate": 1.0, "error_status": 503})
        console.print("outage       GLM answers 503 from now on: scripts fall back to OpenAI")
        console.print("prefect      flows on the Prefect API (ephemeral server if none is set)")

        with use_runtime(PipelineRuntime(settings=settings)):
            first = await _run_with_progress(
                console, sandbox.state, "content_pipeline run 1",
                lambda: content_pipeline(**_parameters(connected, refresh=True)),
            )  # fmt: skip
            _print_summary(console, first, settings)
            paid_before = sum(sandbox.state.paid_calls.values())
            second = await _run_with_progress(
                console, sandbox.state, "content_pipeline run 2 (same input)",
                lambda: content_pipeline(**_parameters(connected, refresh=False)),
            )  # fmt: skip
        paid_again = sum(sandbox.state.paid_calls.values()) - paid_before
        cached = sum(1 for item in second.items for s in item.steps if s.cached)
        console.print(
            f"re-run       {cached} steps served from the cache, {paid_again} paid vendor calls, "
            f"cost {format_usd(second.cost_usd)}; deliveries kept their webhook-id",
            highlight=False,
        )
        received = (await control.get(f"/receiver/_control/{RECEIVER_PATH}")).json()
    deliveries = received.get("deliveries", [])
    verified = sum(1 for d in deliveries if d.get("verified"))
    console.print(
        f"webhook      {len(deliveries)} signed deliveries received "
        f"({verified} verified by the receiver), {len(received.get('accepted_ids', []))} "
        "distinct webhook-ids",
        highlight=False,
    )
    console.rule("[bold green]demo finished")


def _print_summary(console: Console, summary: Any, settings: Settings) -> None:
    from arkyra.pipelines.costs import format_usd

    table = Table("item", "script", "video", "voice", "delivery", "cost", title="run summary")
    for item in summary.items:
        cells = {}
        for kind in ("script", "video", "voice", "delivery"):
            steps = [s for s in item.steps if s.kind == kind]
            cells[kind] = ", ".join(s.fallback_path for s in steps) or (
                "[red]failed[/]" if item.failed_step == kind else "-"
            )
        table.add_row(item.title[:40], cells["script"], cells["video"], cells["voice"],
                      cells["delivery"], format_usd(item.cost_usd))  # fmt: skip
    console.print(table)
    failed = [i for i in summary.items if not i.ok]
    for item in failed:
        console.print(f"[red]failed[/]       {item.title}: {item.error}", highlight=False)
    console.print(
        f"items        {summary.succeeded} of {len(summary.items)} done, estimated cost "
        f"{format_usd(summary.cost_usd)}",
        highlight=False,
    )
    videos = [s.output for i in summary.items for s in i.steps if s.kind == "video" and s.output]
    if videos:
        console.print(f"videos       {videos[0]} (+{len(videos) - 1} more, sandbox URLs)")
    console.print(f"audio        {settings.home / 'media'}  (content-addressed .mp3 files)")
    console.print(
        f"runs         PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')} "
        "prefect server start  -> the runs, their logs and the summary artifact in the UI",
        highlight=False,
    )
