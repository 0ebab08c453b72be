"""``arkyra demo``: the main job, end to end against the local sandbox (no accounts needed).

Starts the sandbox on loopback, migrates the local SQLite database, connects HeyGen through the
credential store (encrypted row + Prefect block on an ephemeral Prefect server), lists its
avatars and voices, and renders one video while showing the job's progress.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from arkyra.config import Settings, apply_prefect_environment, get_settings
from arkyra.providers.jobs import RenderJob

DEMO_ORG = "demo"
DEMO_HEYGEN_KEY = "hg_demo_sandbox_key"


def demo_settings(base: Settings, sandbox_url: str) -> Settings:
    """The user's settings, pointed at the running sandbox."""
    return base.model_copy(
        update={
            "sandbox": True,
            "sandbox_url": sandbox_url,
            "ssrf_allow_loopback": True,
            "job_poll_initial_seconds": 0.5,
            "job_poll_max_seconds": 1.0,
            "job_deadline_seconds": 60.0,
        }
    )


def run_demo(*, port: int = 0, console: Console | None = None) -> None:
    from arkyra.sandbox.server import running_sandbox

    console = console or Console()
    base = get_settings()
    apply_prefect_environment(base)
    with running_sandbox(port=port) as sandbox:
        sandbox.state.faults_for("heygen").job_seconds = 4.0
        settings = demo_settings(base, sandbox.url)
        console.rule("[bold]ARKYRA Pipelines demo")
        console.print(f"sandbox      {sandbox.url}  (every vendor API, emulated on loopback)")
        asyncio.run(_demo(settings, console))


async def _demo(settings: Settings, console: Console) -> None:
    from arkyra.credentials import store_from_settings
    from arkyra.db import migrate
    from arkyra.providers import get_provider
    from arkyra.providers.video.heygen import HeyGen

    keys_were_local = settings.encryption_keys is None
    await asyncio.to_thread(migrate.upgrade, settings)
    console.print(f"database     {settings.effective_database_url}  (migrated)")
    store = store_from_settings(settings)
    if keys_were_local:
        console.print(
            f"keys         generated for local use in {settings.local_keys_path} "
            "(set ARKYRA_ENCRYPTION_KEYS in production)"
        )
    console.print("prefect      credential blocks on the Prefect API (ephemeral server if unset)")
    try:
        with console.status("connecting HeyGen (checks the key, stores row + block)..."):
            integration = await store.connect(
                DEMO_ORG, "heygen", {"api_key": DEMO_HEYGEN_KEY, "label": "Demo HeyGen"}
            )
        console.print(
            f"connected    heygen as [bold]{integration.name}[/] (integration {integration.id})",
            highlight=False,
        )
        _, credentials = await store.credentials_for_use(DEMO_ORG, integration.id)
    finally:
        await store.db.dispose()

    heygen = get_provider("heygen", settings=settings)
    assert isinstance(heygen, HeyGen)
    avatars = await heygen.call("avatars", credentials, {})
    voices = await heygen.call("voices", credentials, {"language": "English"})
    table = Table("kind", "id", "name", "gender", title=f"HeyGen avatars ({len(avatars)})")
    for avatar in avatars:
        table.add_row(avatar.kind, avatar.id, avatar.name, avatar.gender or "-")
    console.print(table)
    first = voices[0]
    console.print(f"voices       {len(voices)} English voices, e.g. {first.name} ({first.id})")

    avatar = next(a for a in avatars if a.kind == "avatar")
    request = {
        "script": "Welcome to ARKYRA Pipelines: content in, finished media out.",
        "avatar_id": avatar.id,
        "voice_id": first.id,
        "title": "ARKYRA demo",
        "test": True,
    }
    job = await heygen.send_data(credentials, request)
    with Progress(
        TextColumn("render       {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(job.id, total=1.0, status="queued")

        def update(current: RenderJob) -> None:
            done = 1.0 if current.status.is_final else (current.progress or 0.0)
            progress.update(task, completed=done, status=current.vendor_status)

        job = await heygen.wait_for_job(credentials, job.id, on_update=update)
    console.print(f"result       {job.result_url}")
    console.rule("[bold green]demo finished")
